//go:build linux

package fanotify

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/inotify"
)

// Execs outside sandboxes should cost nothing (issue #15), yet the
// filesystem exec marks (execfs.go) make every exec on the machine a round
// trip to the agent. Most execs are of programs in directories no sandboxed
// process can add a file to: /usr/bin, /usr/lib/git-core, the Go
// toolchain's directories. A copy of a denied binary is put in place by
// creating a name in a directory (open O_CREAT, link, rename, mknod), or
// by writing over a file there, and both need write access: to the
// directory, or to the file. So the execs of the children of a directory
// that is root's and written by no one else, whose regular files are all
// root's and written by no one else, need no check for copies, and the
// kernel is told to skip them: an ignore mark on the directory
// (FAN_MARK_IGNORE with FAN_EVENT_ON_CHILD, Linux 6.0) silences the
// filesystem mark for its children. The mark is on the directory's inode
// and the kernel takes a file's parent from the file's own dentry, so a
// mount over the directory or over one of its files (which needs a user
// namespace: an exec of the mounted file has that file's own directory
// for parent), a rename of a directory above, or a symbolic link to
// elsewhere, changes nothing: the ignored directory holds only what root
// put there.
//
// Why a group of their own: an ignore mark in a group silences every mark
// of that group for the event, the inode marks on the denied binaries
// themselves (/usr/bin/curl) included. So the filesystem exec marks and
// these ignore marks live in the backend's second group (execGroup), and
// the inode and directory marks, which refuse the denied binaries and
// report the trees, stay in the first, which no ignore mark of this file
// touches.
//
// Which directories: those an exec was reported from (learn), and the
// PATH directories from the start, each checked when it is marked. Not
// ignored: a directory whose owner is not root, or that its group or
// others may write (an ACL granting a user write shows as the group's
// write bit); one holding a regular file that is not root's or is writable
// by group or others; one holding a file that a live sandbox's exec rules
// match by path, or of a deny_exec binary's size, unless that sandbox
// protects the file's inode for execs (the first group's inode mark
// decides for it); while any live sandbox is root's (Sandbox.Owner 0: root
// writes root's directories), none.
//
// Following changes: each ignored directory is watched with inotify
// before it is read (a change during the read is reported too) for
// attribute changes (chmod, chown, ACLs) of itself and its entries, new
// names (create, link, rename into), writes to its files, and its removal;
// any such event takes its ignore mark away (the next exec from it is
// reported, and may mark it again after a fresh check), and a queue
// overflow takes all of them away. A sandbox added later is checked
// against the files each ignored directory had when it was read, before
// its command starts (check). When in doubt, no ignore mark: it is an
// optimisation, never a decision.
//
// Left open: a change root makes (a chmod of a directory or a file there,
// a chown to a user) reaches the agent as an inotify event, and the mark
// goes milliseconds later; a file root makes writable and a user fills
// with a copy and runs in between runs unchecked. A copy root itself puts
// in such a directory while a sandbox runs is a program root installed:
// it is reported (a new name) and checked from then on, but an exec racing
// that event is not.

const (
	// maxIgnoredDirs bounds the ignore marks (and the inotify watches and
	// descriptors they hold): the machine's exec directories are a few
	// dozen.
	maxIgnoredDirs = 256
	// maxTried bounds the directories learn checks while the marks live:
	// a directory that failed is not read again at each of its execs.
	maxTried = 4096
	// dirIgnoreMask is what the ignore mark of a directory silences: the
	// execs of its children, not those of the directory's own inode.
	dirIgnoreMask = unix.FAN_OPEN_EXEC_PERM | unix.FAN_EVENT_ON_CHILD
	// dirIgnoreFlags: FAN_MARK_IGNORE gives the mask's flags their
	// meaning (FAN_EVENT_ON_CHILD); the kernel asks a directory's
	// ignore mark to survive modifications (its files change, not it).
	dirIgnoreFlags = unix.FAN_MARK_IGNORE | unix.FAN_MARK_IGNORED_SURV_MODIFY
	// ignoredDirEvents are the changes that take a directory's ignore
	// mark away.
	ignoredDirEvents = unix.IN_ATTRIB | unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MODIFY | unix.IN_DELETE_SELF
)

// ignoredDir is one directory with an ignore mark.
type ignoredDir struct {
	path  string
	key   inodeKey
	fd    int   // open on the directory: the mark is removed through it, whatever its path is now
	wd    int32 // its inotify watch
	files []dirFile
}

// dirFile is a regular file of an ignored directory when it was read.
type dirFile struct {
	path string
	key  inodeKey
	size int64
}

// rootOnly reports whether the file or directory st describes can be
// written by root alone: root's, and not writable by its group or others.
func rootOnly(st *unix.Stat_t) bool {
	return st.Uid == 0 && st.Mode&0o022 == 0
}

// learn asks for the directory of path, a program just executed, to be
// checked for an ignore mark, unless it was checked already. Called by
// the reader after it answered: a map lookup, and a send that never
// waits.
func (f *fsExecMarks) learn(path string) {
	if path == "" || !f.learning.Load() || strings.HasSuffix(path, " (deleted)") {
		return
	}
	f.learnDir(filepath.Dir(path))
}

func (f *fsExecMarks) learnDir(dir string) {
	f.learnMu.Lock()
	defer f.learnMu.Unlock()
	if f.tried[dir] || len(f.tried) >= maxTried {
		return
	}
	select {
	case f.queue <- dir:
		f.tried[dir] = true
	default: // busy: asked again at the next exec from it
	}
}

// untry lets learn check dir again.
func (f *fsExecMarks) untry(dir string) {
	f.learnMu.Lock()
	delete(f.tried, dir)
	f.learnMu.Unlock()
}

// learnLoop marks the directories learn asks for, until stop.
func (f *fsExecMarks) learnLoop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case dir := <-f.queue:
			select {
			case <-stop:
				return
			default:
				f.ignoreDir(dir)
			}
		}
	}
}

// ignoringLocked reports whether directories may get ignore marks now.
func (f *fsExecMarks) ignoringLocked() bool {
	return !f.noIgnore && !f.closed && len(f.users) > 0 && f.rootOwners == 0 && f.inotify >= 0
}

// setLearningLocked publishes ignoringLocked to learn, which runs in the
// reader and takes no lock for it.
func (f *fsExecMarks) setLearningLocked() { f.learning.Store(f.ignoringLocked()) }

// ignoreDir sets dir's ignore mark if it qualifies. The directory is
// opened and read without f.mu held: the open may be a permission event
// of the first group (a directory marked for opens), which the reader
// answers, and the reader may wait for f.mu (reports). Its inotify watch
// is added first, under f.mu: a change reported before the mark is set
// (dirty) or a sandbox added meanwhile (gen) leaves it unmarked.
func (f *fsExecMarks) ignoreDir(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || !rootOnly(&st) {
		unix.Close(fd)
		return
	}
	key := keyOf(&st)
	f.mu.Lock()
	wd, gen, ok := f.watchLocked(fd, key, uint64(st.Dev))
	f.mu.Unlock()
	if !ok {
		unix.Close(fd)
		return
	}
	files, ok := f.readDir(fd, dir)
	f.mu.Lock()
	defer f.mu.Unlock()
	dirty := f.dirty[wd]
	delete(f.dirty, wd)
	if ok && !dirty && gen == f.gen && f.ignoringLocked() && len(f.dirs) < maxIgnoredDirs && f.byWD[wd] == nil {
		err = unix.FanotifyMark(f.group, unix.FAN_MARK_ADD|dirIgnoreFlags, dirIgnoreMask, fd, "")
		if err == nil {
			d := &ignoredDir{path: dir, key: key, fd: fd, wd: wd, files: files}
			f.dirs[d.key] = d
			f.byWD[d.wd] = d
			return
		}
		if errors.Is(err, unix.EINVAL) {
			// Before Linux 6.0: no FAN_MARK_IGNORE. Every exec stays a
			// round trip, as before.
			f.noIgnore = true
			f.setLearningLocked()
			f.log.Info("the kernel has no FAN_MARK_IGNORE (Linux 6.0): execs outside sandboxes stay round trips to aigate while a sandbox has deny_exec binaries", zap.Error(err))
		}
	}
	if gen == f.gen && f.inotify >= 0 && f.byWD[wd] == nil {
		// (Another generation may be another inotify descriptor, whose
		// watch of that number is another directory's: the old
		// descriptor's watches went with it.)
		_, _ = unix.InotifyRmWatch(f.inotify, uint32(wd))
	}
	unix.Close(fd)
	if dirty {
		f.untry(dir)
	}
}

// watchLocked adds the inotify watch of the directory fd (inode key on
// device dev) before it is read, unless it cannot get a mark; it returns
// the watch and the generation of the sandboxes (check) it is read in.
func (f *fsExecMarks) watchLocked(fd int, key inodeKey, dev uint64) (int32, uint64, bool) {
	if !f.ignoringLocked() || len(f.dirs) >= maxIgnoredDirs || f.dirs[key] != nil {
		return 0, 0, false
	}
	if _, ok := f.marked[dev]; !ok {
		return 0, 0, false // nothing to silence
	}
	wd, err := unix.InotifyAddWatch(f.inotify, "/proc/self/fd/"+strconv.Itoa(fd), ignoredDirEvents)
	if err != nil || f.byWD[int32(wd)] != nil {
		// Another path to a directory marked already (a bind mount
		// shows the same inode under another device number): inotify
		// gives the same watch.
		return 0, 0, false
	}
	f.dirty[int32(wd)] = false
	return int32(wd), f.gen, true
}

// readDir returns the regular files of the directory fd (at dir), and
// false when one keeps it from an ignore mark (see above).
func (f *fsExecMarks) readDir(fd int, dir string) ([]dirFile, bool) {
	dup, err := unix.Dup(fd) // os.File closes its own; fd stays for the mark
	if err != nil {
		return nil, false
	}
	d := os.NewFile(uintptr(dup), dir)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, false
	}
	var files []dirFile
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone: the watch reports what replaces it
			}
			return nil, false
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			// A symbolic link runs its target, whose own directory is
			// the parent the kernel reports; a subdirectory's files
			// have it for parent.
			continue
		}
		file := dirFile{path: filepath.Join(dir, name), key: keyOf(&st), size: st.Size}
		if !rootOnly(&st) || !f.entryOK(file.path, file.key, file.size) {
			return nil, false
		}
		files = append(files, file)
	}
	return files, true
}

// dropLocked takes d's ignore mark away, and lets learn check it again.
func (f *fsExecMarks) dropLocked(d *ignoredDir) {
	if !f.closed {
		if err := unix.FanotifyMark(f.group, unix.FAN_MARK_REMOVE|dirIgnoreFlags, dirIgnoreMask, d.fd, ""); err != nil && !errors.Is(err, unix.ENOENT) {
			f.log.Debug("ignore mark of an exec directory not removed", zap.String("dir", d.path), zap.Error(err))
		}
	}
	if f.inotify >= 0 {
		_, _ = unix.InotifyRmWatch(f.inotify, uint32(d.wd))
	}
	unix.Close(d.fd)
	delete(f.dirs, d.key)
	delete(f.byWD, d.wd)
	f.untry(d.path)
}

// dropAllLocked takes every directory's ignore mark away.
func (f *fsExecMarks) dropAllLocked() {
	for _, d := range f.dirs {
		f.dropLocked(d)
	}
}

// check records sandbox id's owner and checks the ignored directories
// against it, before its command starts: called by Backend.Add for every
// sandbox, with it registered already, so that entryOK knows its policy.
// A root sandbox takes every ignore mark away until it goes.
func (f *fsExecMarks) check(id, owner uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.owners[id]; !ok && owner == 0 {
		f.rootOwners++
	}
	f.owners[id] = owner
	f.gen++ // a directory being read is read without this sandbox's policy
	f.setLearningLocked()
	if f.rootOwners > 0 {
		f.dropAllLocked()
		return
	}
	for _, d := range f.dirs {
		for _, file := range d.files {
			if !f.entryOK(file.path, file.key, file.size) {
				f.dropLocked(d)
				break
			}
		}
	}
}

// forget drops sandbox id's owner, when it is removed.
func (f *fsExecMarks) forget(id uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	owner, ok := f.owners[id]
	if !ok {
		return
	}
	delete(f.owners, id)
	if owner == 0 {
		f.rootOwners--
	}
	f.setLearningLocked()
}

// readInotify takes away the ignore marks of the directories inotify
// reports a change in; false when inotify cannot be read any more (then
// every mark went: the changes are not followed).
func (f *fsExecMarks) readInotify(ino int, buf []byte) bool {
	n, err := unix.Read(ino, buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || n <= 0 {
		f.log.Warn("stopped following the exec directories' changes: their ignore marks are taken away", zap.Error(err))
		f.dropAllLocked()
		f.noIgnore = true
		f.setLearningLocked()
		return false
	}
	inotify.Each(buf[:n], func(ev inotify.Event) {
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			f.dropAllLocked()
			for w := range f.dirty {
				f.dirty[w] = true
			}
			return
		}
		if d := f.byWD[ev.Wd]; d != nil {
			f.dropLocked(d)
		} else if _, reading := f.dirty[ev.Wd]; reading {
			f.dirty[ev.Wd] = true
		}
	})
	return true
}

// ignores reports whether dir has an ignore mark: the execs of its
// children are not reported in the exec group.
func (f *fsExecMarks) ignores(dir string) bool {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.dirs[keyOf(&st)] != nil
}

// ignoreFile sets an ignore mask on the file at path (a loader) in the
// exec group, as markTable.ignoreLocked does in the first: dropped at the
// file's first modification.
func (f *fsExecMarks) ignoreFile(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off || f.closed || len(f.users) == 0 || f.files[path] {
		return
	}
	if unix.FanotifyMark(f.group, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, path) == nil {
		f.files[path] = true
	}
}

// unignoreFile removes ignoreFile's mask.
func (f *fsExecMarks) unignoreFile(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.files[path] || f.closed {
		return nil
	}
	err := unix.FanotifyMark(f.group, unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORED_MASK, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, path)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	delete(f.files, path)
	return nil
}

// execIgnorable is fsExecMarks.entryOK: whether a regular file of a
// directory (path, inode key, size) lets the directory be ignored for
// every live sandbox. A sandbox whose exec rules match it by path, or
// that has a deny_exec binary of its size (a copy?), needs its execs
// reported, unless it protects the inode for execs itself: then the first
// group's inode mark reports them (the denied /usr/bin/curl).
func (b *Backend) execIgnorable(path string, key inodeKey, size int64) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, s := range b.sandboxes {
		if !s.plan.maybeCopy(size) && matchPath(s.Policy, path).exec == 0 {
			continue
		}
		if s.plan.rulesOf(key, -1).exec == 0 {
			return false
		}
	}
	return true
}
