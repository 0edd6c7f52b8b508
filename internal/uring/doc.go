// Package uring is a minimal io_uring client for tests: it submits one
// operation at a time (openat, socket, connect, sendmsg) and returns the
// result of its completion, so that aigate's tests can check that work done
// through io_uring, inline, by an io-wq worker or by an SQPOLL thread, meets
// the same BPF and fanotify checks as the equivalent system call.
package uring
