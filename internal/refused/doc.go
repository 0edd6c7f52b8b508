// Package refused decides which failed system calls of a sandboxed task
// were refusals by the sandbox's Landlock domain, so that they become deny
// events without the kernel's audit (bpf/include/refused.h sends every
// candidate: a write-like file call that failed with EACCES, a ptrace,
// process_vm_* or /proc/PID open, a signal that failed with EPERM).
//
// Unix permissions give the same errnos, so a candidate is kept only when
// both hold: the sandbox's Landlock domain refuses that access (its
// ruleset, or a target process outside the sandbox), and Unix permissions
// alone would have allowed it, judged conservatively (the caller owns
// the file or its group and mode say so without an ACL; every directory
// on the way searchable). Anything it cannot show is dropped silently:
// an event it keeps is always a Landlock refusal.
package refused
