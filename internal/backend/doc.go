// Package backend chooses the Linux enforcement backend: BPF LSM when the
// kernel proves it can run LSM programs, fanotify otherwise, or exactly the
// one the user asked for, with an error that says why it cannot be had.
package backend
