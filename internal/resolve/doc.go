// Package resolve maps compiled file rules to the concrete files that exist
// when a sandbox starts, so backends can also protect them by inode: a hard
// link, a bind mount or a /proc/PID/root path then reaches the same denial.
package resolve
