package config

import (
	"fmt"
	"os/user"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"
)

// Do runs fn with the file-system identity of u when this process is root
// acting for u through sudo, and plainly otherwise.
//
// Under sudo every path aigate touches for the user (~/.aigate, the project
// file, --config, --events) is the user's to point anywhere: a symlink
// ~/.aigate -> /etc or trusted.yaml -> /etc/shadow would otherwise make root
// read, replace or chown a file the user may not touch. Checking each path
// (O_NOFOLLOW, lstat, ownership) leaves races and misses a component; the
// kernel's own permission checks with the user's fsuid, fsgid and groups do
// not, so fn runs on a thread that has them. setfsuid to a non-zero uid also
// drops CAP_DAC_OVERRIDE, CAP_CHOWN and CAP_FOWNER from that thread.
//
// fn must do its file-system calls itself, in its own goroutine: only that
// thread carries the user's identity. The thread is never handed back to the
// scheduler, so the identity cannot leak into other goroutines; it exits
// with fn.
func (u *User) Do(fn func() error) error {
	if u == nil || !u.Sudo || syscall.Geteuid() != 0 {
		return fn()
	}
	groups := u.groups()
	errc := make(chan error, 1)
	go func() {
		// No UnlockOSThread: a goroutine that exits locked takes its
		// thread with it.
		runtime.LockOSThread()
		if err := becomeFS(u.UID, u.GID, groups); err != nil {
			errc <- fmt.Errorf("act as %s (uid %d) for their files: %w", u.Name, u.UID, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// groups are u's supplementary groups, so that the files the user may reach
// through a group are reachable; just the primary group when the user
// database cannot say.
func (u *User) groups() []uint32 {
	gids := []uint32{uint32(u.GID)}
	pu, err := user.LookupId(strconv.Itoa(u.UID))
	if err != nil {
		return gids
	}
	ids, err := pu.GroupIds()
	if err != nil {
		return gids
	}
	for _, s := range ids {
		if g, err := strconv.ParseUint(s, 10, 32); err == nil && uint32(g) != uint32(u.GID) {
			gids = append(gids, uint32(g))
		}
	}
	return gids
}

// becomeFS sets the calling thread's supplementary groups, fsgid and fsuid.
// The raw system calls change only this thread, unlike syscall.Setgroups,
// which (like glibc) changes every thread of the process.
func becomeFS(uid, gid int, groups []uint32) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(groups)), uintptr(unsafe.Pointer(&groups[0])), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	// setfsuid and setfsgid report no error, only the previous value: read
	// the value back to know it took.
	syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0)
	if got, _, _ := syscall.RawSyscall(syscall.SYS_SETFSGID, ^uintptr(0), 0, 0); int(got) != gid {
		return fmt.Errorf("setfsgid %d: still %d", gid, got)
	}
	syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0)
	if got, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, ^uintptr(0), 0, 0); int(got) != uid {
		return fmt.Errorf("setfsuid %d: still %d", uid, got)
	}
	return nil
}
