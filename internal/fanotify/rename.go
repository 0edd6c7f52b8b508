//go:build linux

package fanotify

import (
	"fmt"
	"os"
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
// its rule). A protected regular file replaced or moved away is put back
// from the copy keep.go holds (Event.Restored) and the sandbox goes on, as
// after a refusal; anything else (a directory above a protected path, a
// file without a copy, a restore that fails) kills the sandbox as soon as
// the watcher sees it: detection and containment, not prevention. What
// was moved stays where it is, but what was put in its place is swept
// once the sandbox is dead (sweep.go): planted entries moved aside, the
// protected files written back. The mover is known by its pid, placed from
// /proc when the event is handled; a process that has exited and been
// reaped by then (a short mv) is placed by the kernel's record of its exit
// (bpf/exitrec.c, ExitRecords: the sandbox each sandboxed process was in
// when it exited), else by the sandbox it was last seen in (pidCache).
// Only when neither is there (the kernel refused the exit program, or its
// LRU map evicted the record, or the agent runs in a pid namespace other
// than the initial one, whose pids the records hold) is the move only
// logged (unplaced) and what it left taken as the user's. A pid reused by
// an outside process that also exited before the event is read can be
// taken for the sandboxed one (exitedSandbox); docs/threat-model.md.
//
// Deletes (unlink, rmdir: rm -rf .git, then a prepared .git copied in its
// place) are handled the same way, reported as events.OpDelete: a deleted
// protected file with a copy is put back, a removed directory above a
// protected path kills the sandbox (and is swept). A watcher queue overflow loses the
// events it held; the check after it (overflow.go) finds what they would
// have reported of protected paths.

// moved handles one FAN_MOVED_FROM or FAN_MOVED_TO event.
func (b *Backend) moved(ev *watchEvent) { b.afterTheFact(ev, events.OpRename) }

// truncated handles one FAN_MODIFY event of a held file (keep.go): a
// truncate(2), or a write through a descriptor opened before the sandbox
// was (a write open is refused). A sandbox's kills it; then the snapshot
// of the content, where the keeper has one, is written back. The user's
// own change is taken into the snapshot.
func (b *Backend) truncated(ev *watchEvent) { b.afterTheFact(ev, events.OpTruncate) }

// deleted handles one FAN_DELETE event: an unlink or rmdir in a watched
// directory. fanotify has no permission event for either, so `rm -rf .git
// && cp -a prepared .git` replaces the hooks without opening one; the
// delete is handled as a move away is (afterTheFact): a protected file
// with a copy is put back, anything else kills the sandbox.
func (b *Backend) deleted(ev *watchEvent) { b.afterTheFact(ev, events.OpDelete) }

// watchMemo remembers, within one read of the watcher, the last process
// placed and the last directory resolved: `rm -rf` sends thousands of
// deletes in a row, from one process, directory by directory, and placing
// the process (/proc) and resolving the directory (open_by_handle_at,
// readlink) for each was most of the agent's time for them. Used by the
// watcher's reader only (watchMu); drainWatch clears it for each read.
type watchMemo struct {
	pid    int
	s      *sandbox
	fsid   [2]int32
	handle string
	dir    string
	err    error
}

// placeWatched is sandboxOf, remembered for the rest of the read.
func (b *Backend) placeWatched(pid int) *sandbox {
	m := &b.wmemo
	if m.pid != pid || pid <= 0 {
		m.pid, m.s = pid, b.sandboxOf(pid)
	}
	return m.s
}

// watchedDir is dirPath, remembered for the rest of the read.
func (b *Backend) watchedDir(ev *watchEvent) (string, error) {
	m := &b.wmemo
	if m.handle == "" || m.fsid != ev.fsid || m.handle != string(ev.handle) {
		m.fsid, m.handle = ev.fsid, string(ev.handle)
		m.dir, m.err = b.watch.dirPath(ev)
	}
	return m.dir, m.err
}

// afterTheFact handles a move, delete or truncate (op) that the watcher
// reports. A truncate kills the sandbox before its file is written back.
func (b *Backend) afterTheFact(ev *watchEvent, op events.Op) {
	s := b.placeWatched(ev.pid)
	if s == nil {
		if op == events.OpTruncate {
			b.outsideModify(ev) // the user's edit in place
		} else {
			b.outside(ev)
		}
		return
	}
	parent, err := b.watchedDir(ev)
	if err != nil {
		b.log.Debug(string(op)+": directory not found", zap.String("name", ev.name), zap.Error(err))
		return
	}
	path := filepath.Join(parent, ev.name)
	id, ok := replaces(s.Policy, path)
	if !ok {
		return
	}
	e := b.afterEvent(s, ev, op, path, id)
	killed := false
	if !e.Audit && op == events.OpTruncate {
		// Killed first, and waited for: no process of the sandbox is left
		// to truncate the file again after it is written back. Only a
		// snapshot can be written back: the held inode is the truncated one.
		killCgroup(s.CgroupPath)
		killed = true
		if !b.keep.hasContent(path) {
			b.log.Warn("a sandboxed process truncated a protected file whose content aigate does not hold: killed, not undone",
				zap.String("sandbox", s.Name), zap.String("path", path), zap.String("why", b.keep.whyNoContent(path)))
		} else if err := b.restore(ev, path); err != nil {
			b.log.Warn("a sandboxed process truncated a protected file that cannot be restored: killed, not undone",
				zap.String("sandbox", s.Name), zap.String("path", path), zap.Error(err))
		} else {
			e.Restored = true
		}
	}
	if !e.Audit && ev.mask&unix.FAN_ONDIR == 0 && op != events.OpTruncate {
		if err := b.restore(ev, path); err != nil {
			b.log.Warn("a sandboxed process replaced or removed a protected file that cannot be restored",
				zap.String("sandbox", s.Name), zap.String("path", path), zap.Error(err))
		} else {
			e.Restored = true
		}
	}
	b.stats.violation(e.Kind, e.Op, e.Audit)
	b.emit(e)
	if e.Audit || e.Restored || killed {
		return
	}
	b.log.Warn("a sandboxed process moved or removed a protected path: killing the sandbox",
		zap.String("sandbox", s.Name), zap.String("path", path), zap.String("op", string(op)), zap.Int("pid", ev.pid))
	// cgroup.kill acts at once; waiting for the cgroup to empty must not
	// hold up the watcher, which marks new directories. Then what was
	// planted beneath path is moved aside and the protected files put
	// back (sweep.go).
	b.killAndSweep(s, path, op)
}

// afterEvent is the event of a move, delete or truncate (op) of path,
// which s's rule id protects, that the watcher reported as ev.
func (b *Backend) afterEvent(s *sandbox, ev *watchEvent, op events.Op, path string, id policy.RuleID) events.Event {
	e := events.Event{
		Time:     time.Now(),
		Sandbox:  s.Name,
		CgroupID: s.CgroupID,
		PID:      uint32(ev.pid),
		Kind:     events.KindFile,
		Op:       op,
		Path:     path,
		Rule:     uint32(id),
		Audit:    s.Mode == policy.ModeAudit,
		Backend:  "fanotify",
	}
	if r, ok := s.Policy.Rule(id); ok {
		e.RuleText = r.Pattern
	}
	b.fillTask(&e, ev.pid) // before a kill ends the process
	return e
}

// restore puts the held copy of path back, in the event's directory.
func (b *Backend) restore(ev *watchEvent, path string) error {
	if !b.keep.has(path) {
		return errNotKept
	}
	dir, err := b.watch.dirFd(ev)
	if err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	defer unix.Close(dir)
	old, err := b.keep.restore(dir, ev.name, path)
	b.retire(old)
	if err == nil {
		b.protectRestored(filepath.Dir(path), path)
	}
	return err
}

// protectRestored protects by inode the file a restore has just put at
// path, the one the keeper holds, in every sandbox that protects path:
// the event that follows the restore's rename protects what path names
// when it is handled, which may already be a sandbox's next replacement,
// and until then a hard link of the restored file would reach no rule.
func (b *Backend) protectRestored(parent, path string) {
	fd := b.keep.dup(path)
	if fd < 0 {
		return
	}
	defer unix.Close(fd)
	for _, s := range b.sandboxList() {
		b.protectNewAt(s, parent, path, fd)
	}
}

// retire closes a descriptor the keeper no longer holds. An inode with no
// name left is freed by the close, and the filesystem may give its number
// to the next file created: every sandbox forgets its inode rules first,
// or that unrelated file would be refused as the protected one.
func (b *Backend) retire(fd int) {
	if fd < 0 {
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil && st.Nlink == 0 {
		b.forgetInode(keyOf(&st))
	}
	unix.Close(fd)
}

// forgetInode drops every sandbox's rules for an inode that is gone.
func (b *Backend) forgetInode(key inodeKey) {
	for _, s := range b.sandboxList() {
		s.mu.Lock()
		s.plan.inoMu.Lock()
		_, had := s.plan.protected[key]
		delete(s.plan.inodes, key)
		delete(s.plan.ids, key)
		delete(s.plan.protected, key)
		s.plan.inoMu.Unlock()
		s.mu.Unlock()
		if had {
			b.marks.unprotect(key)
		}
	}
}

// outside handles a creation, move or delete by a process in no sandbox.
// At a path whose copy is held, the user replaced (or removed) the file:
// hold the new one (or the absence), so
// that a later restore brings back the user's version. That includes a
// mover that has exited by now (git run outside exits at once): it may
// have been a sandbox's (unplaced logs it), but its file is in place
// whatever is held, and the next placed replacement is still undone. The
// agent's own restores are skipped: the copy is already the restored
// file, and what the path holds by the time the event is read may be a
// sandbox's next replacement.
func (b *Backend) outside(ev *watchEvent) {
	if ev.pid == os.Getpid() {
		return
	}
	if ev.mask&(unix.FAN_MOVED_FROM|unix.FAN_MOVED_TO|unix.FAN_DELETE) != 0 {
		b.unplaced(ev)
	}
	if ev.mask&unix.FAN_ONDIR != 0 && ev.mask&(unix.FAN_MOVED_FROM|unix.FAN_DELETE) != 0 {
		if parent, err := b.watchedDir(ev); err == nil {
			b.forgetDirs(filepath.Join(parent, ev.name)) // the user's: not for the overflow recheck
		}
	}
	if ev.mask&unix.FAN_ONDIR != 0 || !b.keep.hasName(ev.name) {
		return
	}
	parent, err := b.watchedDir(ev)
	if err != nil {
		return
	}
	path := filepath.Join(parent, ev.name)
	if !b.keep.held(path) {
		return
	}
	dir, err := b.watch.dirFd(ev)
	if err != nil {
		b.keep.drop(path) // nothing known to restore
		return
	}
	defer unix.Close(dir)
	b.retire(b.keep.refresh(dir, ev.name, path))
}

// outsideModify takes the user's change in place of a held file into
// the keeper's snapshot, so that a later restore gives it back. The
// agent's own writes go to new files, not to held inodes.
func (b *Backend) outsideModify(ev *watchEvent) {
	if ev.pid == os.Getpid() || !b.keep.hasName(ev.name) {
		return
	}
	parent, err := b.watchedDir(ev)
	if err != nil {
		return
	}
	b.keep.resnap(filepath.Join(parent, ev.name))
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

// unplaced logs a move or delete of a path some sandbox protects by a process that
// exited before it could be placed (no exit record, not seen before): it
// may have been a sandbox's, so the agent's log keeps it for whoever looks.
func (b *Backend) unplaced(ev *watchEvent) {
	if ev.pid <= 0 {
		return
	}
	if err := unix.Access("/proc/"+strconv.Itoa(ev.pid), unix.F_OK); err == nil {
		return // alive and outside every sandbox: the user's own
	}
	parent, err := b.watchedDir(ev)
	if err != nil {
		return
	}
	path := filepath.Join(parent, ev.name)
	for _, s := range b.sandboxList() {
		if _, ok := replaces(s.Policy, path); ok {
			b.log.Warn("a protected path was moved or removed by a process that exited before aigate could tell whether it was sandboxed",
				zap.String("path", path), zap.Int("pid", ev.pid), zap.String("sandbox", s.Name))
			return
		}
	}
}
