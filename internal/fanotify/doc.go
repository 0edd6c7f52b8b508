// Package fanotify is the enforcement backend for kernels where BPF LSM is
// unusable: file opens and execs are checked through fanotify permission
// events (FAN_OPEN_PERM, FAN_OPEN_EXEC_PERM) answered by aigate. It
// implements enforce.Backend for file and exec rules; internal/backend pairs
// it with internal/egress for the network rules. docs/backends.md says what
// it enforces and what it cannot.
package fanotify
