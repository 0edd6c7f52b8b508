package main

import "syscall"

// childAttr puts a child (QEMU, virtiofsd) in its own process group, so a
// terminal's Ctrl-C reaches only vmtest, which then kills the whole group;
// and kills the child if vmtest itself dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
