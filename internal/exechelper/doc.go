// Package exechelper is the exec helper's own side of package launch: a
// copy of aigate started with its environment waits on a pipe for the
// go-ahead, confines itself (no_new_privs, the terminal-injection filter,
// Landlock, seccomp) and execs the command. It runs from this package's
// init, so it imports only what that path needs: see helper.go.
package exechelper
