//go:build linux

package fanotify

import (
	"fmt"
	"path/filepath"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Terminals. A deny_read rule on a pseudo-terminal (aigate run adds one
// for each of the user's terminals but the run's own: package userterm)
// is not enforced by a permission mark: for each event the kernel would
// open the terminal for the agent, and a tty opened without O_NOCTTY
// (which fanotify_init's event flags cannot ask for) by a session leader
// with no controlling terminal (the agent as a service) becomes its
// controlling terminal, whose hangup then kills it. Instead the watcher,
// a group that reports file handles and opens nothing, is told of every
// open of such a terminal (FAN_OPEN on its inode): one by a sandboxed
// process kills the sandbox, with an open event (events.OpOpen). What it wrote or read in
// the moment before the kill is not undone (docs/threat-model.md).

// devptsMagic is statfs's f_type of a devpts filesystem.
const devptsMagic = 0x1cd1

// openKey names a watched terminal as an event does: the filesystem and
// the name in its directory (a devpts filesystem has one directory).
type openKey struct {
	fsid [2]int32
	name string
}

type openWatch struct {
	path string
	refs int
}

// unwatchedTerminals is the warning for terminals the watcher could not
// watch: the rule is not enforced.
func unwatchedTerminals(paths []string) string {
	more := ""
	if len(paths) > 1 {
		more = fmt.Sprintf(" and %d more", len(paths)-1)
	}
	return fmt.Sprintf("deny_read %s%s (your other terminals) is not enforced by the fanotify backend on this kernel, which gives no file handles for them (Linux 6.12 does, 6.1 does not): a sandboxed command can open them by name; the lsm backend refuses it", paths[0], more)
}

// CanWatchTerminals reports whether this kernel lets the watcher watch a
// pseudo-terminal for opens (file handles for devpts), by trying it on
// /dev/pts/ptmx in a group of its own.
func CanWatchTerminals() error {
	fd, err := unix.FanotifyInit(watchInitFlags, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fanotify_init: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN, unix.AT_FDCWD, "/dev/pts/ptmx"); err != nil {
		return fmt.Errorf("watch /dev/pts/ptmx for opens: %w", err)
	}
	return nil
}

// terminals are the exact paths of c's deny_read rules that are
// pseudo-terminals.
func terminals(c *policy.Compiled) []string {
	var out []string
	for _, e := range c.Read.Paths {
		if isTerminal(e.Value) {
			out = append(out, e.Value)
		}
	}
	return out
}

func isTerminal(path string) bool {
	var st unix.Stat_t
	var sfs unix.Statfs_t
	return filepath.IsAbs(path) && unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR &&
		unix.Statfs(path, &sfs) == nil && sfs.Type == devptsMagic
}

// watchOpen watches the terminal at path for opens.
func (w *watcher) watchOpen(path string) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return fmt.Errorf("watch %s for opens: %w", path, err)
	}
	k := openKey{fsid: sfs.Fsid.Val, name: filepath.Base(path)}
	w.mu.Lock()
	defer w.mu.Unlock()
	if o := w.opens[k]; o != nil && o.path == path {
		o.refs++
		return nil
	}
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD, unix.FAN_OPEN, unix.AT_FDCWD, path); err != nil {
		return fmt.Errorf("watch %s for opens: %w", path, err)
	}
	w.opens[k] = &openWatch{path: path, refs: 1}
	return nil
}

// unwatchOpen drops one reference to the terminal at path; the mark goes
// with the last one.
func (w *watcher) unwatchOpen(path string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, o := range w.opens {
		if o.path != path {
			continue
		}
		if o.refs--; o.refs <= 0 {
			delete(w.opens, k)
			_ = unix.FanotifyMark(w.fd, unix.FAN_MARK_REMOVE, unix.FAN_OPEN, unix.AT_FDCWD, path)
		}
		return
	}
}

// openPath is the watched terminal an open event names.
func (w *watcher) openPath(ev *watchEvent) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.opens[openKey{fsid: ev.fsid, name: ev.name}]
	if o == nil {
		return "", false
	}
	return o.path, true
}

// openedTerminal is the terminal an open event of the watcher names (one
// a rule names, a pseudo-terminal, a virtual console) and the test of
// whether it is the opening sandbox's own.
func (b *Backend) openedTerminal(ev *watchEvent) (string, func(*sandbox, int, string) bool, bool) {
	if path, ok := b.watch.openPath(ev); ok {
		return path, b.ownTerminal, true
	}
	if path, ok := b.watch.ptsPath(ev); ok {
		return path, b.ownTerminal, true
	}
	if path, ok := b.watch.consolePath(ev); ok {
		return path, b.ownConsole, true
	}
	return "", nil, false
}

// terminalOpened handles the open of a watched terminal, of any
// pseudo-terminal or of a virtual console: by a sandboxed process whose
// policy denies it, or that is not the sandbox's own (ownTerminal,
// ownConsole), the sandbox is killed, with an open event; the user's own
// opens are nothing.
func (b *Backend) terminalOpened(ev *watchEvent) {
	path, own, ok := b.openedTerminal(ev)
	if !ok {
		return
	}
	s := b.placeWatched(ev.pid)
	if s == nil {
		return
	}
	id, ok := s.Policy.Read.Match(path)
	if !ok && own(s, ev.pid, path) {
		return
	}
	e := b.afterEvent(s, ev, events.OpOpen, path, id)
	b.stats.violation(e.Kind, e.Op, e.Audit)
	b.emit(e)
	if e.Audit {
		return
	}
	b.log.Warn("a sandboxed process opened another terminal of its user: killing the sandbox",
		zap.String("sandbox", s.Name), zap.String("path", path), zap.Int("pid", ev.pid))
	go killCgroup(s.CgroupPath)
}
