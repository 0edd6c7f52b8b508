//go:build linux

package fanotify

import (
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Renames. fanotify has no permission event for rename, link or unlink, so
// a sandbox can replace a protected path without opening it: rename over
// .git/config, or mv .git away and a prepared tree in its place (the LSM
// backend refuses both). The directory watcher reports moves in the marked
// trees after the fact; a move of a deny_write path, or of a directory
// above one, by a process of a sandbox is reported (events.OpRename, with
// its rule) and the sandbox is killed as soon as the watcher sees it:
// detection and containment, not prevention. The moved files stay where
// they are, and the event says which. The mover is known by its pid, read
// from /proc when the event is handled: a process that has exited and been
// reaped by then (a short mv) cannot be placed; its move is only logged
// (unplaced). docs/threat-model.md says how often that happened.

// moved handles one FAN_MOVED_FROM or FAN_MOVED_TO event.
func (b *Backend) moved(ev *watchEvent) {
	s := b.sandboxOf(ev.pid)
	if s == nil {
		b.unplaced(ev)
		return
	}
	parent, err := b.watch.dirPath(ev)
	if err != nil {
		b.log.Debug("move: directory not found", zap.String("name", ev.name), zap.Error(err))
		return
	}
	path := filepath.Join(parent, ev.name)
	id, ok := replaces(s.Policy, path)
	if !ok {
		return
	}
	e := events.Event{
		Time:     time.Now(),
		Sandbox:  s.Name,
		CgroupID: s.CgroupID,
		PID:      uint32(ev.pid),
		Kind:     events.KindFile,
		Op:       events.OpRename,
		Path:     path,
		Rule:     uint32(id),
		Audit:    s.Mode == policy.ModeAudit,
		Backend:  "fanotify",
	}
	if r, ok := s.Policy.Rule(id); ok {
		e.RuleText = r.Pattern
	}
	fillTask(&e, ev.pid)
	b.stats.violation(e.Kind, e.Op, e.Audit)
	b.emit(e)
	if e.Audit {
		return
	}
	b.log.Warn("a sandboxed process moved a protected path: killing the sandbox",
		zap.String("sandbox", s.Name), zap.String("path", path), zap.Int("pid", ev.pid))
	// cgroup.kill acts at once; waiting for the cgroup to empty must not
	// hold up the watcher, which marks new directories.
	go killCgroup(s.CgroupPath)
}

// replaces reports whether moving path replaces or removes something a
// deny_write rule protects, and by which rule: the path itself, or a
// directory above a protected path (as policy.Compiled.Ancestors, of the
// write rules only).
func replaces(c *policy.Compiled, path string) (policy.RuleID, bool) {
	if id, ok := c.Write.Match(path); ok {
		return id, true
	}
	for _, e := range c.Write.Paths {
		if len(e.Value) > len(path) && e.Value[:len(path)] == path && e.Value[len(path)] == '/' {
			return e.Rule, true
		}
	}
	return 0, false
}

// unplaced logs a move of a path some sandbox protects by a process that
// exited before it could be placed: it may have been a sandbox's (the race
// above), so the agent's log keeps it for whoever looks.
func (b *Backend) unplaced(ev *watchEvent) {
	if ev.pid <= 0 {
		return
	}
	if err := unix.Access("/proc/"+strconv.Itoa(ev.pid), unix.F_OK); err == nil {
		return // alive and outside every sandbox: the user's own
	}
	parent, err := b.watch.dirPath(ev)
	if err != nil {
		return
	}
	path := filepath.Join(parent, ev.name)
	for _, s := range b.sandboxList() {
		if _, ok := replaces(s.Policy, path); ok {
			b.log.Warn("a protected path was moved by a process that exited before aigate could tell whether it was sandboxed",
				zap.String("path", path), zap.Int("pid", ev.pid), zap.String("sandbox", s.Name))
			return
		}
	}
}
