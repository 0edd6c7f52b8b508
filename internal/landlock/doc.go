// Package landlock confines a process with a Landlock domain: processes
// outside the domain become unreachable (no ptrace or /proc/PID/mem of
// them; from ABI 6 no signals and no abstract unix sockets), and writes are
// limited to the paths a Plan grants. The plan is pure and table-tested;
// only Restrict talks to the kernel.
package landlock
