// Package launch starts a command in a sandbox that the agent created: it
// forks aigate itself as an exec helper, has the agent move the helper into
// the sandbox (api.Session.Place), and only then lets it confine itself
// (no_new_privs, the terminal-injection filter, Landlock, on fanotify the
// socket-family filter) and exec the command. The helper's own side is package
// exechelper: any binary that imports this package runs as the helper when
// started with its environment.
package launch
