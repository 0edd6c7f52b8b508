// Package seccomp installs the seccomp filter that the exec helper puts on
// a sandboxed command when no BPF LSM program refuses socket families for
// it (the fanotify backend).
package seccomp
