//go:build linux

package fanotify

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"

	"golang.org/x/sys/unix"
)

// Virtual consoles. login chowns the console a user logs in on
// (/dev/ttyN) to the user, so a sandbox of that user could open it by
// name, read what is typed there and write to it. run's deny_read rules
// name the consoles the user owns at the start, which no permission mark
// can enforce (terminal.go: the kernel would open the console for the
// agent), and a console logged in on later is in no rule. So while a
// sandbox lives the watcher also watches every console for opens
// (FAN_OPEN, a notification: the opener does not wait), one inode mark
// each: the nodes of tty1..tty63 are made at boot and stay. Marking /dev
// with FAN_EVENT_ON_CHILD instead would report every open of /dev/null
// and /dev/urandom on the machine. An open by a sandboxed process of a
// console that is not its own (ownConsole) kills the sandbox, with an open
// event (terminalOpened), after the fact; the LSM backend refuses it
// (bpf/include/vtscope.h).

// consoleDir is where the consoles' nodes are.
const consoleDir = "/dev"

// ttyMajor is the device major of the virtual consoles (minors 1 to
// maxConsoles) and of the serial ports (64 and up).
const (
	ttyMajor    = 4
	maxConsoles = 63
)

var consoleName = regexp.MustCompile(`^tty([1-9]|[1-5][0-9]|6[0-3])$`)

// unwatchedConsoles is the warning when the watcher cannot watch the
// consoles: neither the run's rules for them nor the check are enforced.
const unwatchedConsoles = "your virtual consoles (/dev/ttyN, the ones you log in on) are not kept out by the fanotify backend on this kernel, which gives no file handles for /dev: a sandboxed command can open one by name; the lsm backend refuses it"

// consoleWatch is the marks on the consoles: one set for every sandbox.
type consoleWatch struct {
	refs  int
	fsid  [2]int32
	paths []string
}

// consoles are the nodes in consoleDir that are virtual consoles.
// Nothing is followed: a symbolic link is not a console.
func consoles() []string {
	var out []string
	for n := 1; n <= maxConsoles; n++ {
		p := filepath.Join(consoleDir, "tty"+strconv.Itoa(n))
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && isConsole(&st) {
			out = append(out, p)
		}
	}
	return out
}

// isConsole reports whether st is of a virtual console, tty1 to tty63.
func isConsole(st *unix.Stat_t) bool {
	minor := unix.Minor(st.Rdev)
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == ttyMajor && minor >= 1 && minor <= maxConsoles
}

// watchConsoles watches every console's opens, or adds a reference.
func (w *watcher) watchConsoles() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.vts.refs > 0 {
		w.vts.refs++
		return nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(consoleDir, &sfs); err != nil {
		return fmt.Errorf("watch the consoles for opens: %w", err)
	}
	paths := consoles()
	for i, p := range paths {
		if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_DONT_FOLLOW, unix.FAN_OPEN, unix.AT_FDCWD, p); err != nil {
			unmarkConsoles(w.fd, paths[:i])
			return fmt.Errorf("watch %s for opens: %w", p, err)
		}
	}
	w.vts = consoleWatch{refs: 1, fsid: sfs.Fsid.Val, paths: paths}
	return nil
}

// unwatchConsoles drops a reference; the marks go with the last one.
func (w *watcher) unwatchConsoles() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.vts.refs--; w.vts.refs == 0 {
		unmarkConsoles(w.fd, w.vts.paths)
		w.vts = consoleWatch{}
	}
}

func unmarkConsoles(fd int, paths []string) {
	for _, p := range paths {
		_ = unix.FanotifyMark(fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_DONT_FOLLOW, unix.FAN_OPEN, unix.AT_FDCWD, p)
	}
}

// consolePath is the console an open event of the console marks names.
func (w *watcher) consolePath(ev *watchEvent) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.vts.refs <= 0 || ev.fsid != w.vts.fsid || !consoleName.MatchString(ev.name) {
		return "", false
	}
	return filepath.Join(consoleDir, ev.name), true
}

// CanWatchConsoles reports whether this kernel lets the watcher watch the
// consoles for opens (file handles for /dev), by trying it on the first
// console in a group of its own. A machine without consoles has nothing
// to watch.
func CanWatchConsoles() error {
	paths := consoles()
	if len(paths) == 0 {
		return nil
	}
	fd, err := unix.FanotifyInit(watchInitFlags, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fanotify_init: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_DONT_FOLLOW, unix.FAN_OPEN, unix.AT_FDCWD, paths[0]); err != nil {
		return fmt.Errorf("watch %s for opens: %w", paths[0], err)
	}
	return nil
}

// ownConsole reports whether the console at path, which pid of s opened,
// is the sandbox's own: pid's controlling terminal, of a session led
// outside the sandbox (the user's console with run --raw-terminal; the
// LSM backend's test, bpf/include/vtscope.h, reads the controlling
// terminal before the open). The session matters after the fact: a
// process that leads a session of its own and has no controlling terminal
// makes the console it opens its controlling terminal. When pid is gone,
// the console is the sandbox's own if it is the controlling terminal of
// one of its processes, of a session led outside (the session of a leader
// that exited has no terminal any more).
func (b *Backend) ownConsole(s *sandbox, pid int, path string) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || !isConsole(&st) {
		return false
	}
	pids, in, err := sandboxPIDs(s)
	if err != nil {
		return false
	}
	if own, alive := cttyOutside(strconv.Itoa(pid), st.Rdev, in); alive {
		return own
	}
	for _, p := range pids {
		if own, _ := cttyOutside(strconv.Itoa(p), st.Rdev, in); own {
			return true
		}
	}
	return false
}

// cttyOutside reports whether process pid's controlling terminal is rdev
// and its session's leader is not in inside, and whether pid was there to
// read.
func cttyOutside(pid string, rdev uint64, inside map[int]bool) (own, alive bool) {
	sid, tty, ok := procSessionTTY(pid)
	if !ok {
		return false, false
	}
	return tty == rdev && !inside[sid], true
}
