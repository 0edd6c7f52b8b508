//go:build linux

package fanotify

import (
	"bytes"
	"fmt"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// After an overflow. When the watcher's queue is full the kernel drops
// events and queues one FAN_Q_OVERFLOW instead: a sandbox's rename over a
// protected file, its delete, its truncate, or a move of .git, made while
// the queue was full, is never reported. recheck looks at what the events
// would have said and acts as if they had been seen:
//
//   - each directory of a sandbox's tree that a deny_write path lies in or
//     beneath (.git, the project) must still be the inode the walk found:
//     if it is gone or another, the sandbox is killed, as for a move of it;
//   - each file the keeper holds must still be at its path: if the path is
//     gone or another file, the held copy is put back (restored); what
//     cannot be put back kills the sandboxes that protect the path;
//   - each held file's content must still be its snapshot: if it is a
//     truncation of it (shorter and a prefix, or longer by zeros), it is
//     taken as a truncate(2), the sandboxes killed and the content written
//     back; any other change is taken as the user's edit in place.
//
// The mover is unknown: every sandbox that protects the path gets the
// event (Event.Rescan), and a change the user made while the queue was
// full is undone or kills those sandboxes too. Failing closed is the
// point: the alternative is a replacement nobody sees.

// recheck is run by the watcher's reader (watchMu held) after an overflow,
// before the trees are scanned for new directories.
func (b *Backend) recheck() {
	list := b.sandboxList()
	if len(list) == 0 {
		return
	}
	// An audited sandbox is told, never killed; nothing is undone for it
	// alone (as after an event).
	killed := map[*sandbox]bool{}
	for _, s := range list {
		for _, d := range b.movedTreeDirs(s) {
			id, _ := replaces(s.Policy, d)
			b.rescanFound(s, events.OpRename, d, id, false)
			if s.Mode != policy.ModeAudit {
				b.killAndSweep(s, d, events.OpRename) // and what was planted beneath moved aside
			}
		}
	}
	for _, k := range b.keep.states() {
		var protectors []*sandbox
		enforced := false
		for _, s := range list {
			if _, ok := replaces(s.Policy, k.path); ok {
				protectors = append(protectors, s)
				enforced = enforced || s.Mode != policy.ModeAudit
			}
		}
		if len(protectors) == 0 {
			continue
		}
		op, changed := k.changed()
		if !changed {
			if k.snap && !bytes.Equal(k.data, k.now) {
				b.keep.resnap(k.path) // the user's edit in place, its FAN_MODIFY lost
			}
			continue
		}
		restored := false
		if enforced {
			if op == events.OpTruncate {
				for _, s := range protectors {
					if s.Mode != policy.ModeAudit {
						killCgroup(s.CgroupPath) // before the write-back, as after a truncate event
					}
				}
			}
			if err := b.restorePath(k.path); err != nil {
				b.log.Warn("after a watcher queue overflow: a protected path changed and cannot be restored: killing the sandboxes that protect it",
					zap.String("path", k.path), zap.String("op", string(op)), zap.Error(err))
			} else {
				restored = true
			}
		}
		for _, s := range protectors {
			id, _ := replaces(s.Policy, k.path)
			audit := s.Mode == policy.ModeAudit
			b.rescanFound(s, op, k.path, id, restored && !audit)
			if !audit && (!restored || op == events.OpTruncate) {
				killed[s] = true
			}
		}
	}
	for s, kill := range killed {
		if kill {
			go killCgroup(s.CgroupPath)
		}
	}
}

// movedTreeDirs returns the directories of s's tree, at or above a
// deny_write path, that are no longer the inode the walk found at their
// path: moved away, removed, or replaced while the queue was full.
func (b *Backend) movedTreeDirs(s *sandbox) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for d, td := range s.plan.tree {
		if _, ok := replaces(s.Policy, d); !ok {
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(d, &st); err == nil && keyOf(&st) == td.key {
			continue
		}
		out = append(out, d)
	}
	return out
}

// rescanFound reports what recheck found, for sandbox s.
func (b *Backend) rescanFound(s *sandbox, op events.Op, path string, id policy.RuleID, restored bool) {
	e := events.Event{
		Time:     time.Now(),
		Sandbox:  s.Name,
		CgroupID: s.CgroupID,
		Kind:     events.KindFile,
		Op:       op,
		Path:     path,
		Rule:     uint32(id),
		Audit:    s.Mode == policy.ModeAudit,
		Backend:  "fanotify",
		Restored: restored,
		Rescan:   true,
	}
	if r, ok := s.Policy.Rule(id); ok {
		e.RuleText = r.Pattern
	}
	b.stats.violation(e.Kind, e.Op, e.Audit)
	b.emit(e)
	b.log.Warn("after a watcher queue overflow: a protected path changed while its events were lost",
		zap.String("sandbox", s.Name), zap.String("path", path), zap.String("op", string(op)), zap.Bool("restored", restored))
}

// restorePath puts the held copy of path back, its directory opened
// without following a symlink.
func (b *Backend) restorePath(path string) error {
	dir, err := unix.Openat2(unix.AT_FDCWD, filepath.Dir(path), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return fmt.Errorf("restore %s: open its directory: %w", path, err)
	}
	defer unix.Close(dir)
	old, err := b.keep.restore(dir, filepath.Base(path), path)
	b.retire(old)
	return err
}

// keptState is what the keeper holds for one path, as recheck needs it.
type keptState struct {
	path   string
	absent bool     // held as absent
	key    inodeKey // of the held file
	size   int64    // of the held file now
	data   []byte   // the snapshot, when snap
	snap   bool
	now    []byte // the held file's content now, when snap and the size allows
}

// states lists the paths held with a copy (or as absent).
func (k *keeper) states() []keptState {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]keptState, 0, len(k.files))
	for path, c := range k.files {
		switch {
		case c.fd == wasAbsent:
			out = append(out, keptState{path: path, absent: true})
		case c.fd >= 0:
			var st unix.Stat_t
			if unix.Fstat(c.fd, &st) != nil {
				continue
			}
			// Copies on disk (larger files) are not compared: a truncate
			// of one during an overflow is taken for the user's.
			ks := keptState{path: path, key: keyOf(&st), size: st.Size, data: c.data, snap: c.snap && c.disk < 0}
			if c.snap && st.Size <= int64(k.snapFile) {
				ks.now = make([]byte, st.Size)
				n, _ := unix.Pread(c.fd, ks.now, 0)
				ks.now = ks.now[:max(n, 0)]
			}
			out = append(out, ks)
		}
	}
	return out
}

// changed reports whether the path no longer holds what the keeper holds
// (op rename: replaced or moved away; delete: gone; truncate: the content
// truncated in place).
func (ks *keptState) changed() (events.Op, bool) {
	var st unix.Stat_t
	err := unix.Lstat(ks.path, &st)
	if ks.absent {
		return events.OpRename, err == nil
	}
	if err != nil {
		return events.OpDelete, true
	}
	if keyOf(&st) != ks.key {
		return events.OpRename, true
	}
	if ks.snap && truncation(ks.data, ks.now, ks.size) {
		return events.OpTruncate, true
	}
	return "", false
}

// truncation reports whether now (size bytes) is what truncate(2) makes
// of was: shorter and a prefix of it, or longer by zeros.
func truncation(was, now []byte, size int64) bool {
	switch {
	case size < int64(len(was)):
		return int64(len(now)) == size && bytes.Equal(was[:size], now)
	case size > int64(len(was)):
		// Past the snapshot bound the content is not read: taken as the
		// user's (a truncate that grows a file adds zeros, nothing more).
		return int64(len(now)) == size && bytes.Equal(was, now[:len(was)]) &&
			len(bytes.Trim(now[len(was):], "\x00")) == 0
	}
	return false
}
