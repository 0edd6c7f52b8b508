//go:build linux

package fanotify

import (
	"errors"
	"fmt"
	"path/filepath"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Deny_write paths outside the marked trees. The watcher watches the
// project's and the home's directories (and deny_write trees) whole, but
// a deny_write file elsewhere (/tmp/build/file, /srv/data/cfg, a tmux
// socket in /tmp/tmux-UID) lies in a directory no walk marked: its
// unlink or rename, and the rename of a user's directory above it,
// reached no one (issue #10). Now:
//
//   - each deny_write path is watched by name in its directory: the
//     directory is marked in the watcher's group for moves and deletes
//     (nameMask, no creations), and what is reported there goes through
//     the handling of the trees (rename.go) only for the names watched;
//     every other event in it is dropped on a map lookup of the
//     directory's file handle and the name (skip), before its process is
//     placed or its directory resolved;
//   - each directory above it that a user other than root can remove or
//     rename is watched itself (selfMask: FAN_MOVE_SELF, FAN_DELETE_SELF
//     on its own inode), not by name in its parent: a user's /tmp/build
//     then costs the other deleters in /tmp nothing. Its move by a
//     sandbox kills the sandbox (aboveMoved), as in the trees.
//
// Only a deny_write path directly in a busy directory (/tmp/x) makes
// every delete there, by anyone, an event queued and read by the agent
// (BenchmarkTmpChurn, docs/performance.md).
//
// Which levels: a directory entry can be removed or renamed by a user
// other than root only if its parent is writable by one (owned by one
// with the owner's write bit, or group or other writable), and, in a
// sticky directory (/tmp), only if the user owns the entry or the parent.
// So /tmp itself (in root's /) is never watched, /tmp/build is for a
// user's /tmp/build/file but root's /tmp/.X11-unix is not, and the walk
// goes up to / since a user's directory may lie above a root's one. The
// owners are read when the sandbox starts: a chown or chmod later is not
// seen.

// dirID names a watched directory as an event does: fsid and file handle
// (type and bytes, without the length).
type dirID struct {
	fsid   [2]int32
	handle string
}

// namedDir is a directory watched for some of its names.
type namedDir struct {
	path  string
	id    dirID // zero when the filesystem gives no handle: nothing skipped
	names map[string]int
}

// watchName watches dir (of device dev) for moves and deletes of name.
func (w *watcher) watchName(dir string, dev uint64, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.named[dir]; d != nil {
		d.names[name]++
		return nil
	}
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, nameMask, unix.AT_FDCWD, dir); err != nil {
		return fmt.Errorf("watch %s for moves of %s: %w", dir, name, err)
	}
	d := &namedDir{path: dir, names: map[string]int{name: 1}}
	w.named[dir] = d
	fsid, err := w.mount(dir, dev)
	if err != nil {
		return fmt.Errorf("watch %s for moves of %s: %w", dir, name, err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("watch %s for moves of %s: %w", dir, name, err)
	}
	defer unix.Close(fd)
	if h := fileID(fd); h != "" {
		d.id = dirID{fsid: fsid, handle: h}
		w.namedID[d.id] = d
	}
	return nil
}

// unwatchName drops one reference to name in dir; the mark goes with the
// last name, unless dir is in a tree too.
func (w *watcher) unwatchName(dir, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.named[dir]
	if d == nil {
		return
	}
	if d.names[name]--; d.names[name] <= 0 {
		delete(d.names, name)
	}
	if len(d.names) > 0 {
		return
	}
	delete(w.named, dir)
	if w.namedID[d.id] == d {
		delete(w.namedID, d.id)
	}
	if w.refs[dir] == 0 {
		mask := uint64(nameMask)
		if w.selves[dir] != nil {
			mask &^= unix.FAN_ONDIR
		}
		_ = unix.FanotifyMark(w.fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_ONLYDIR, mask, unix.AT_FDCWD, dir)
	}
}

// selfMask is what a directory above a protected path asks of its own
// inode: its moves and its removal. FAN_ONDIR: the kernel drops a
// directory's events without it.
const selfMask = unix.FAN_MOVE_SELF | unix.FAN_DELETE_SELF | unix.FAN_ONDIR

// selfDir is a directory watched for its own moves: path is where it was
// when the watch began.
type selfDir struct {
	path string
	id   dirID
	refs int
}

// watchSelf watches dir (of device dev) for its own moves and removal.
// Unlike a name watch in its parent, this costs nothing when anything
// else in the parent (/tmp) is deleted.
func (w *watcher) watchSelf(dir string, dev uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.selves[dir]; d != nil {
		d.refs++
		return nil
	}
	fsid, err := w.mount(dir, dev)
	if err != nil {
		return fmt.Errorf("watch %s for its moves: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("watch %s for its moves: %w", dir, err)
	}
	defer unix.Close(fd)
	h := fileID(fd)
	if h == "" {
		return fmt.Errorf("watch %s for its moves: the filesystem gives no file handle", dir)
	}
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, selfMask, unix.AT_FDCWD, dir); err != nil {
		return fmt.Errorf("watch %s for its moves: %w", dir, err)
	}
	d := &selfDir{path: dir, id: dirID{fsid: fsid, handle: h}, refs: 1}
	w.selves[dir] = d
	w.selfID[d.id] = d
	return nil
}

// unwatchSelf drops one reference to dir's own watch.
func (w *watcher) unwatchSelf(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.selves[dir]
	if d == nil {
		return
	}
	if d.refs--; d.refs > 0 {
		return
	}
	delete(w.selves, dir)
	if w.selfID[d.id] == d {
		delete(w.selfID, d.id)
	}
	mask := uint64(selfMask)
	if w.refs[dir] > 0 || w.named[dir] != nil {
		mask &^= unix.FAN_ONDIR
	}
	_ = unix.FanotifyMark(w.fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_ONLYDIR, mask, unix.AT_FDCWD, dir)
}

// selfPath returns where the directory a FAN_MOVE_SELF or FAN_DELETE_SELF
// event names was when its watch began; false when it is not watched so,
// or when its parent is a tree directory, whose own event reports the
// move with a name.
func (w *watcher) selfPath(ev *watchEvent) (string, bool) {
	if len(ev.handle) < 8 {
		return "", false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.selfID[dirID{fsid: ev.fsid, handle: string(ev.handle[4:])}]
	if d == nil || w.refs[filepath.Dir(d.path)] > 0 {
		return "", false
	}
	return d.path, true
}

// skip reports whether ev is a move or delete in a directory watched only
// for other names: no sandbox's rule can be concerned. A directory that
// is in a tree too is never skipped (its creations grow the tree).
func (w *watcher) skip(ev *watchEvent) bool {
	if ev.mask&(unix.FAN_MODIFY|unix.FAN_MOVE_SELF|unix.FAN_DELETE_SELF) != 0 || len(ev.handle) < 8 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.namedID) == 0 {
		return false
	}
	d := w.namedID[dirID{fsid: ev.fsid, handle: string(ev.handle[4:])}]
	return d != nil && d.names[ev.name] == 0 && w.refs[d.path] == 0
}

// namedWatch is one name watched in one directory for a sandbox, or
// (name "") a directory watched itself, for its own moves.
type namedWatch struct {
	dir  string
	dev  uint64
	name string
}

// namesToWatch returns what keeps paths in place: each path's name in its
// directory, and each directory above it that a user other than root
// could remove or rename, itself (see above). Nothing in or directly
// beneath a directory of tree (the sandbox's walked trees, watched
// whole): their events say the same already.
func namesToWatch(paths []string, tree map[string]treeDir) []namedWatch {
	seen := map[[2]string]bool{}
	var out []namedWatch
	for _, p := range paths {
		for a := filepath.Clean(p); a != "/" && filepath.IsAbs(a); a = filepath.Dir(a) {
			dir, name := filepath.Dir(a), filepath.Base(a)
			if seen[[2]string{dir, name}] {
				break // and so every level above
			}
			seen[[2]string{dir, name}] = true
			var ds unix.Stat_t
			if unix.Lstat(dir, &ds) != nil || ds.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue // not there (yet): nothing to watch at this level
			}
			var es unix.Stat_t
			err := unix.Lstat(a, &es)
			if err != nil && !errors.Is(err, unix.ENOENT) {
				continue
			}
			if _, inTree := tree[dir]; inTree || !usersCanRemove(&ds, &es, err == nil) {
				continue
			}
			if a == filepath.Clean(p) {
				out = append(out, namedWatch{dir: dir, dev: uint64(ds.Dev), name: name})
			} else if err == nil && es.Mode&unix.S_IFMT == unix.S_IFDIR {
				out = append(out, namedWatch{dir: a, dev: uint64(es.Dev)})
			}
		}
	}
	return out
}

// usersCanRemove reports whether a user other than root could remove or
// rename an entry (es; exists says whether there is one, else what could
// be moved there) of directory ds.
func usersCanRemove(ds, es *unix.Stat_t, exists bool) bool {
	writable := ds.Uid != 0 && ds.Mode&0o200 != 0 || ds.Mode&0o022 != 0
	if !writable {
		return false
	}
	if ds.Mode&unix.S_ISVTX == 0 || ds.Uid != 0 || !exists {
		return true
	}
	return es.Uid != 0
}

// keptInPlace returns the paths of p whose names are watched outside the
// trees: the files a deny_write rule protects and the exact deny_write
// paths of c (those that do not exist, sockets, directories).
func keptInPlace(p *plan, c *policy.Compiled) []string {
	var paths []string
	for key, path := range p.protected {
		if p.inodes[key].write != 0 {
			paths = append(paths, path)
		}
	}
	for _, e := range c.Write.Paths {
		if filepath.IsAbs(e.Value) {
			paths = append(paths, e.Value)
		}
	}
	return paths
}

// aboveMoved handles a FAN_MOVE_SELF or FAN_DELETE_SELF of a directory
// watched for its own moves: a sandbox's move or removal of a directory
// above a protected path, which nothing can undo, kills the sandbox, as
// in the trees (rename.go). The event's path is where the directory was.
// The user's own move is nothing.
func (b *Backend) aboveMoved(ev *watchEvent) {
	path, ok := b.watch.selfPath(ev)
	if !ok {
		return
	}
	s := b.placeWatched(ev.pid)
	if s == nil {
		return
	}
	id, ok := replaces(s.Policy, path)
	if !ok {
		return
	}
	op := events.OpRename
	if ev.mask&unix.FAN_DELETE_SELF != 0 {
		op = events.OpDelete
	}
	e := b.afterEvent(s, ev, op, path, id)
	b.stats.violation(e.Kind, e.Op, e.Audit)
	b.emit(e)
	if e.Audit {
		return
	}
	b.log.Warn("a sandboxed process moved or removed a directory above a protected path: killing the sandbox",
		zap.String("sandbox", s.Name), zap.String("path", path), zap.String("op", string(op)), zap.Int("pid", ev.pid))
	go killCgroup(s.CgroupPath)
}
