// Package fanotify is the enforcement backend for kernels where BPF LSM is
// unusable: file opens and execs are checked through fanotify permission
// events (FAN_OPEN_PERM, FAN_OPEN_EXEC_PERM) answered by aigate, and network
// rules come from the cgroup sock_addr programs of internal/loader. It
// implements enforce.Backend; docs/backends.md says what it enforces and what
// it cannot.
package fanotify
