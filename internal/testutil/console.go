//go:build linux

package testutil

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FreeConsole returns a virtual console, from /dev/tty<from> down, that is
// root's and that no process has open or as its controlling terminal: one
// no one uses on a shared machine (never tty1 to tty12, where logins and X
// are), or fails the test. Tests that run at once start from different
// consoles.
func FreeConsole(t testing.TB, from int) string {
	t.Helper()
	for n := from; n > 12; n-- {
		p := "/dev/tty" + strconv.Itoa(n)
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 4 ||
			unix.Minor(st.Rdev) != uint32(n) || st.Uid != 0 {
			continue
		}
		if !deviceInUse(st.Rdev) {
			return p
		}
	}
	t.Fatalf("no virtual console from /dev/tty%d down is free (root's, no process holding it): this test needs one", from)
	return ""
}

// deviceInUse reports whether some process has the device rdev open or as
// its controlling terminal.
func deviceInUse(rdev uint64) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			// state ppid pgrp session tty_nr: after the command's last ')'.
			if i := strings.LastIndexByte(string(stat), ')'); i >= 0 {
				if f := strings.Fields(string(stat[i+1:])); len(f) > 4 && f[4] == strconv.FormatUint(rdev, 10) {
					return true
				}
			}
		}
		dir := "/proc/" + e.Name() + "/fd/"
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Stat(dir+fd.Name(), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == rdev {
				return true
			}
		}
	}
	return false
}
