//go:build linux

package fanotify

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
)

// The user's terminals opened after a sandbox was made. The deny_read
// rules of aigate run name the terminals the user has at the start; a
// window, tmux pane or ssh session opened later has a pseudo-terminal no
// rule names. So while a sandbox lives the watcher also watches the
// directory of pseudo-terminals for opens of every entry (FAN_OPEN with
// FAN_EVENT_ON_CHILD: a notification, the opener does not wait), and an
// open by a sandboxed process of one that is not the sandbox's own
// (ownTerminal: the LSM backend's test, bpf/include/ptyscope.h, made from
// /proc) kills the sandbox, with an open event. After the fact, as for the
// named terminals (terminal.go). The device numbers compared are of the
// one devpts the sandbox reaches: it cannot mount another (Landlock
// refuses mount(2) to it).

// ptsDir is the directory of the agent's pseudo-terminals, which a
// sandbox sees too.
const ptsDir = "/dev/pts"

var ptsName = regexp.MustCompile(`^[0-9]+$`)

// unwatchedNewTerminals is the warning when the watcher cannot watch
// ptsDir: the check is not enforced.
const unwatchedNewTerminals = "your terminals opened after this start (a new window, tmux pane or ssh session) are not kept out by the fanotify backend on this kernel, which gives no file handles for them (Linux 6.12 does, 6.1 does not): a sandboxed command can open them by name; the lsm backend refuses it"

// ptsWatch is the mark on ptsDir: one for every sandbox.
type ptsWatch struct {
	refs int
	fsid [2]int32
}

// watchPts watches every pseudo-terminal's opens, or adds a reference.
func (w *watcher) watchPts() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pts.refs > 0 {
		w.pts.refs++
		return nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(ptsDir, &sfs); err != nil {
		return fmt.Errorf("watch %s for opens: %w", ptsDir, err)
	}
	if sfs.Type != devptsMagic {
		return fmt.Errorf("watch %s for opens: not a devpts filesystem", ptsDir)
	}
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD, unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, ptsDir); err != nil {
		return fmt.Errorf("watch %s for opens: %w", ptsDir, err)
	}
	w.pts = ptsWatch{refs: 1, fsid: sfs.Fsid.Val}
	return nil
}

// unwatchPts drops a reference; the mark goes with the last one.
func (w *watcher) unwatchPts() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pts.refs--; w.pts.refs == 0 {
		_ = unix.FanotifyMark(w.fd, unix.FAN_MARK_REMOVE, unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, ptsDir)
	}
}

// ptsPath is the pseudo-terminal an open event of the ptsDir mark names.
func (w *watcher) ptsPath(ev *watchEvent) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pts.refs <= 0 || ev.fsid != w.pts.fsid || !ptsName.MatchString(ev.name) {
		return "", false
	}
	return filepath.Join(ptsDir, ev.name), true
}

// ownTerminal reports whether the pseudo-terminal at path, which pid of s
// opened, is the sandbox's own: gone by now (nothing is left to read or
// write; a pty the sandbox made and closed at once), pid's controlling
// terminal, the controlling terminal of a session a process of s leads
// (run's pty, whose session the command leads; a tmux pane), or one whose
// master a process of s holds (a pty it made: os.openpty, expect, tmux),
// or whose master no process holds at all: it is being torn down (its
// maker exited; the kernel removes the name a moment after the last
// close, so the name outlives the maker), and every terminal of the
// user's has its emulator, tmux or sshd holding the master.
// A pty with no session is not enough: a new window's pty has none for a
// moment after it is made, until its shell takes it (the LSM backend's
// test, bpf/include/ptyscope.h, says the same with "unlocked by"). Only
// the sandbox's processes are read, not every process's.
func (b *Backend) ownTerminal(s *sandbox, pid int, path string) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return true
	}
	if _, tty, ok := procSessionTTY(strconv.Itoa(pid)); ok && tty == st.Rdev {
		return true
	}
	pids, in, err := sandboxPIDs(s)
	if err != nil {
		return false
	}
	index := uint64(unix.Minor(st.Rdev))
	for _, p := range pids {
		ps := strconv.Itoa(p)
		if sid, tty, ok := procSessionTTY(ps); ok && tty == st.Rdev && in[sid] {
			return true
		}
		if holdsMaster(ps, index) {
			return true
		}
	}
	// Seen under load in the escape suite: a python in the sandbox made
	// a pty, opened its name and exited before this ran, and the sandbox
	// was killed for its own terminal.
	return !masterHeld(index, in)
}

// sandboxPIDs lists the processes of s, and the same as a set.
func sandboxPIDs(s *sandbox) ([]int, map[int]bool, error) {
	pids, err := (&cgroup.Group{Path: s.CgroupPath}).PIDs()
	if err != nil {
		return nil, nil, err
	}
	in := make(map[int]bool, len(pids))
	for _, p := range pids {
		in[p] = true
	}
	return pids, in, nil
}

// masterHeld reports whether a process other than those in skip (already
// read) holds the master of pty index. It reads every process's
// descriptors, which only an open that is not the sandbox's otherwise
// comes to.
func masterHeld(index uint64, skip map[int]bool) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true // unknown: not the sandbox's
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || skip[pid] {
			continue
		}
		if holdsMaster(e.Name(), index) {
			return true
		}
	}
	return false
}

// ptmxDev is the device of /dev/ptmx and of a devpts's ptmx: a pty master.
var ptmxDev = unix.Mkdev(5, 2)

// holdsMaster reports whether process pid has the master of pty index
// open (its fdinfo says which pty a master is: tty-index).
func holdsMaster(pid string, index uint64) bool {
	dir := "/proc/" + pid + "/fd/"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want := []byte("tty-index:\t" + strconv.FormatUint(index, 10) + "\n")
	for _, e := range ents {
		var st unix.Stat_t
		if unix.Stat(dir+e.Name(), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != ptmxDev {
			continue
		}
		info, err := os.ReadFile("/proc/" + pid + "/fdinfo/" + e.Name())
		if err == nil && bytes.Contains(info, want) {
			return true
		}
	}
	return false
}

// procSessionTTY reads the session and the controlling terminal (0: none;
// encoded as stat's st_rdev) of process pid from /proc/PID/stat.
func procSessionTTY(pid string) (sid int, tty uint64, ok bool) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name may hold anything, ')' too: the fields follow the last.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	// state ppid pgrp session tty_nr ...
	f := bytes.Fields(data[i+1:])
	if len(f) < 5 {
		return 0, 0, false
	}
	sid, err1 := strconv.Atoi(string(f[3]))
	nr, err2 := strconv.ParseUint(string(f[4]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return sid, nr, true
}
