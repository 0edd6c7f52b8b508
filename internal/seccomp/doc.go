// Package seccomp installs the seccomp filter that the exec helper puts on
// a sandboxed command on the fanotify backend, where no BPF LSM program
// refuses what it refuses: socket families outside unix, inet and netlink,
// new user namespaces (unless allow_userns) and io_uring (unless
// allow_io_uring).
package seccomp
