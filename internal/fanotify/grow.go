//go:build linux

package fanotify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Growing the trees. When the watcher reports a directory created in (or
// moved into) a directory of a sandbox's tree, the new directory and every
// directory already inside it join the tree: the watcher's mark first, so
// that nothing created during the walk is missed (it is either reported or
// found by the readdir that follows), then the permission mark, then its
// entries (matching files protected by inode, as at Add).
//
// The residual race: between the creation of a directory and its
// permission mark (the event's trip through the watcher, tens to hundreds
// of microseconds, TestNewDirRace), an open of a file in it is not reported.
// Only a file that someone writes into the new directory inside that window
// and a sandboxed process opens inside it too is missed.

func (b *Backend) watchLoop() {
	defer b.wg.Done()
	buf := make([]byte, 64*1024)
	evs := make([]watchEvent, 0, 256)
	fds := []unix.PollFd{{Fd: int32(b.watch.fd), Events: unix.POLLIN}, {Fd: int32(b.wake[0]), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			b.log.Error("poll fanotify directory watcher", zap.Error(err))
			return
		}
		select {
		case <-b.closing:
			return
		default:
		}
		if !b.drainWatch(buf, &evs) {
			return
		}
	}
}

// drainWatch reads and handles the watcher's events until none is queued;
// false when the watcher cannot be read. One caller at a time: the loop,
// or Remove, which handles what a sandbox did before it is forgotten (a
// rename just before the session ends is undone, and reported to it).
func (b *Backend) drainWatch(buf []byte, evs *[]watchEvent) bool {
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	for {
		n, err := unix.Read(b.watch.fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			break
		}
		if err != nil {
			b.log.Error("read fanotify directory watcher", zap.Error(err))
			return false
		}
		b.wmemo = watchMemo{}
		*evs, err = parseWatchEvents(buf[:n], (*evs)[:0])
		if err != nil {
			b.log.Error("parse fanotify directory events", zap.Error(err))
			*evs = append(*evs, watchEvent{overflow: true})
		}
		rescan := false
		for i := range *evs {
			ev := &(*evs)[i]
			switch {
			case ev.overflow:
				rescan = true
			case ev.mask&(unix.FAN_MOVE_SELF|unix.FAN_DELETE_SELF) != 0:
				b.aboveMoved(ev)
			case ev.mask&unix.FAN_OPEN != 0:
				b.terminalOpened(ev)
			case b.watch.skip(ev):
				b.stats.watchSkipped()
			default:
				if ev.mask&(unix.FAN_MOVED_FROM|unix.FAN_MOVED_TO) != 0 {
					b.moved(ev)
				} else if ev.mask&unix.FAN_DELETE != 0 {
					b.deleted(ev)
				} else if ev.mask&unix.FAN_MODIFY != 0 {
					b.truncated(ev)
				} else if ev.mask&unix.FAN_CREATE != 0 && ev.mask&unix.FAN_ONDIR == 0 && b.keep.hasName(ev.name) && b.sandboxOf(ev.pid) == nil {
					b.outside(ev) // a protected file re-created by the user
				}
				if ev.mask&(unix.FAN_CREATE|unix.FAN_MOVED_TO) != 0 {
					if ev.mask&unix.FAN_ONDIR != 0 {
						b.dirAppeared(ev)
					} else {
						b.fileAppeared(ev)
					}
				}
			}
		}
		if rescan {
			b.stats.watchOverflow()
			b.log.Warn("directory watcher queue overflowed: checking the protected paths and scanning the marked trees for new directories")
			b.recheck()
			b.rescan()
		}
	}
	return true
}

// dirAppeared handles one directory created in or moved into a watched one.
func (b *Backend) dirAppeared(ev *watchEvent) {
	parent, err := b.watch.dirPath(ev)
	if err != nil {
		b.log.Debug("new directory: parent not found", zap.String("name", ev.name), zap.Error(err))
		return
	}
	for _, s := range b.sandboxList() {
		b.grow(s, parent, filepath.Join(parent, ev.name), false)
	}
}

// fileAppeared protects by inode a file created in, or moved or renamed
// into, a watched directory when a rule matches its path, as Add does for
// the files it finds: a hard link of it elsewhere, or its directory renamed,
// then still reaches the rule. Until the event is handled (the window
// TestNewFileByInode measures) only its path protects it.
func (b *Backend) fileAppeared(ev *watchEvent) {
	parent, err := b.watch.dirPath(ev)
	if err != nil {
		b.log.Debug("new file: directory not found", zap.String("name", ev.name), zap.Error(err))
		return
	}
	path := filepath.Join(parent, ev.name)
	for _, s := range b.sandboxList() {
		b.protectNew(s, parent, path)
	}
}

// protectNew marks path's inode for s if parent is in s's tree and a rule
// of s matches path.
func (b *Backend) protectNew(s *sandbox, parent, path string) { b.protectNewAt(s, parent, path, -1) }

// protectNewAt is protectNew for the file open as fd (-1: the one at path).
func (b *Backend) protectNewAt(s *sandbox, parent, path string, fd int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return
	}
	if _, ok := s.plan.tree[parent]; !ok {
		return
	}
	if !matchPath(s.Policy, path).any() {
		return
	}
	delta := newPlanMaps()
	delta.fresh = true
	delta.copies = s.plan.copies
	pl := &planner{c: s.Policy, p: delta}
	if fd >= 0 {
		pl.fileFd(path, fd)
	} else {
		pl.file(path)
	}
	if len(delta.protected) == 0 {
		return // gone already, or not a regular file
	}
	for k := range delta.protected {
		if _, ok := s.plan.protected[k]; ok {
			delete(delta.protected, k)
		}
	}
	if err := b.marks.add(s.ID, delta, b.anyOtherMatch(s.ID)); err != nil {
		b.log.Warn("new file not marked", zap.String("sandbox", s.Name), zap.String("path", path), zap.Error(err))
	}
	s.plan.merge(delta)
}

func (b *Backend) sandboxList() []*sandbox {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*sandbox, 0, len(b.sandboxes))
	for _, s := range b.sandboxes {
		out = append(out, s)
	}
	return out
}

// grow adds child, a new directory in parent, and the directories below it
// to s's tree, if parent is in it.
//
// A reported directory is marked even when the tree already holds its path
// and inode number: ext4 hands a freed inode number to the next directory
// made (rm -rf build && mkdir build), and the new inode has no mark. Only
// the rescan after an overflow, which looks at every directory, skips those.
func (b *Backend) grow(s *sandbox, parent, child string, rescan bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return
	}
	top, ok := s.plan.tree[parent]
	if !ok {
		return
	}
	queue := []string{child}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		var st unix.Stat_t
		if err := unix.Lstat(dir, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		key := keyOf(&st)
		old, known := s.plan.tree[dir]
		if rescan && known && old.key == key {
			continue
		}
		if !known && !b.roomFor(s) {
			b.stats.unmarkedDir()
			if !s.boundWarned {
				s.boundWarned = true
				b.log.Warn("new directory not marked: the sandbox reached its directory bound, name rules are not enforced in it",
					zap.String("sandbox", s.Name), zap.String("dir", dir), zap.Int("max_walk_dirs", b.opts.MaxWalkDirs))
			}
			return
		}
		if err := b.watch.add(dir, key.dev, !known, true); err != nil {
			b.log.Warn("new directory: its own new subdirectories will not be marked", zap.Error(err))
		}
		delta := newPlanMaps()
		delta.fresh = true
		delta.copies = s.plan.copies
		pl := &planner{c: s.Policy, p: delta}
		queue = append(queue, pl.visit(dir, top.mask)...)
		// Inodes this sandbox protects already hold their count and mark.
		for k := range delta.protected {
			if _, ok := s.plan.protected[k]; ok {
				delete(delta.protected, k)
			}
		}
		if err := b.marks.add(s.ID, delta, b.anyOtherMatch(s.ID)); err != nil {
			b.log.Warn("new directory not marked", zap.String("sandbox", s.Name), zap.String("dir", dir), zap.Error(err))
		}
		s.plan.merge(delta)
		if !known {
			s.plan.dirs++
		}
		b.stats.grownDir()
	}
}

// merge adds what a grow step marked to the sandbox's plan, so that Remove
// drops it and decisions see its inodes.
func (p *plan) merge(d *plan) {
	for path, m := range d.marks {
		p.marks[path] |= m
	}
	for path, td := range d.tree {
		p.tree[path] = td
	}
	for k, path := range d.protected {
		p.protected[k] = path
	}
	p.inoMu.Lock()
	for k, r := range d.inodes {
		p.inodes[k] = r
		if id, ok := d.ids[k]; ok {
			p.ids[k] = id
		} else {
			delete(p.ids, k)
		}
	}
	p.inoMu.Unlock()
}

// roomFor reports whether s may mark one more directory, first forgetting,
// at most every pruneEvery (5s), the directories of its tree that are gone.
// Called with s.mu held.
func (b *Backend) roomFor(s *sandbox) bool {
	if s.plan.dirs < b.opts.MaxWalkDirs {
		return true
	}
	if now := time.Now(); now.After(s.nextPrune) {
		s.nextPrune = now.Add(b.opts.pruneEvery)
		b.prune(s)
	}
	return s.plan.dirs < b.opts.MaxWalkDirs
}

// prune forgets the tree directories that no longer exist (or are another
// inode now). Their kernel marks went with their inodes; only the books are
// kept here.
func (b *Backend) prune(s *sandbox) {
	for path, td := range s.plan.tree {
		b.pruneDir(s, path, td)
	}
}

// pruneDir forgets path from s's tree if it is gone or another inode.
// Called with s.mu held.
func (b *Backend) pruneDir(s *sandbox, path string, td treeDir) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err == nil && keyOf(&st) == td.key {
		return
	}
	delete(s.plan.tree, path)
	delete(s.plan.marks, path)
	b.marks.forget(s.ID, path)
	b.watch.remove(path)
	s.plan.dirs--
}

// forgetDirs forgets, in every sandbox's tree, dir and the directories
// below it that are gone: the user moved or removed it, and the recheck
// after an overflow (overflow.go) must not take that for a sandbox's.
func (b *Backend) forgetDirs(dir string) {
	for _, s := range b.sandboxList() {
		s.mu.Lock()
		for path, td := range s.plan.tree {
			if path == dir || strings.HasPrefix(path, dir+"/") {
				b.pruneDir(s, path, td)
			}
		}
		s.mu.Unlock()
	}
}

// rescan finds the directories that appeared while the watcher's queue was
// full: every subdirectory of a tree directory that is not in the tree.
func (b *Backend) rescan() {
	for _, s := range b.sandboxList() {
		s.mu.Lock()
		dirs := make([]string, 0, len(s.plan.tree))
		for d := range s.plan.tree {
			dirs = append(dirs, d)
		}
		s.mu.Unlock()
		for _, d := range dirs {
			entries, err := os.ReadDir(d)
			if err != nil {
				continue
			}
			for _, e := range entries {
				if e.IsDir() {
					b.grow(s, d, filepath.Join(d, e.Name()), true)
				}
			}
		}
	}
}
