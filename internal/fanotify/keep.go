//go:build linux

package fanotify

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Restoring a replaced file. fanotify cannot refuse a rename (rename.go),
// but it can undo one: the backend holds an O_RDONLY descriptor of each
// deny_write file it protects, and the inode it names stays readable after
// a rename has put another file at its path (or moved it away). When a
// sandboxed process does either, the file is written back from that
// descriptor: a temporary file in the same directory, same mode and owner,
// renamed over the path. Nothing is followed: the directory comes from the
// event's file handle, the names are opened relative to it, O_NOFOLLOW.
//
// The copy follows the user: writes in place reach the inode held, and a
// replacement by a process outside every sandbox (an editor writing a
// temporary file and renaming it, git run outside) makes the backend hold
// the new file instead, so a restore never brings back something older
// than the user's last version. A replacement whose mover had exited
// before it could be placed is taken as the user's too (rename.go).
//
// A deny_write path named exactly by a rule that does not exist when the
// sandbox starts (a first .claude/settings.local.json) is held as absent:
// undoing a rename to it removes what was moved there.
//
// At most maxKept files are held (one descriptor each, the content stays
// on disk); a deny_write file past the bound has no copy, and replacing it
// kills the sandbox.
//
// The descriptor is of the file itself, not a copy of its content: a
// change in place reaches it. truncate(2) by path needs no open, so no
// permission event refuses it; each held inode is marked for FAN_MODIFY in
// the watcher's group (notify), which the kernel sends for a size change
// too, and a truncate by a sandboxed process kills the sandbox (rename.go).
// The inode held is truncated too; so the keeper also keeps the content
// of small files in the agent's memory (snapshot: files of at most
// snapFileMax bytes, snapTotalMax in all), taken when a file is held and
// again whenever the user changes it (a FAN_MODIFY by a process outside
// every sandbox, a replacement). After a sandbox's truncate the sandbox is
// killed first, then the content is written back (rename.go): the event
// says restored. A restore after a rename or delete writes the snapshot
// too where there is one, not what the held inode holds by then (a
// sandbox can move a file away and truncate it where it lies).
//
// Small files in memory: nothing is left behind when the agent dies, no
// path exists that a sandboxed process (or anyone but root with ptrace on
// the agent) could read or replace, and the bound makes it a few MiB at
// most. A larger file, up to diskFileMax (diskTotalMax in all), is copied
// into the agent's keep directory (Options.KeepDir, root's, mode 0700) as
// an O_TMPFILE: a file with no name, freed with its descriptor, so it too
// leaves nothing behind and has no path anyone could open. The copy is a
// reflink (FICLONE) where the filesystem shares extents and the keep
// directory is on the file's filesystem, a byte copy otherwise. A file
// past those bounds, or with no keep directory, has no copy of its
// content: its truncate kills the sandbox and is not undone, and the
// agent's log says so when the file is held and again at the truncate
// (noContent).

// DefaultKeepDir is where the agent (or an embedded run) copies protected
// files too large to keep in memory (Options.KeepDir): on disk, not /run's
// tmpfs, since the copies may take up to 256 MiB. Its files have no names
// and go with the process.
const DefaultKeepDir = "/var/lib/aigate/keep"

const maxKept = 1024

// The snapshot budget: content copies of at most snapFileMax bytes each,
// snapTotalMax in all, per agent (one keeper serves every sandbox).
const (
	snapFileMax  = 64 << 10
	snapTotalMax = 4 << 20
)

// The disk budget: copies of files larger than snapFileMax in the keep
// directory, at most diskFileMax bytes each and diskTotalMax in all. A
// byte copy of a held file is taken again on each of the user's changes
// to it (resnap), under the keeper's lock: the bound keeps that to tens of
// milliseconds.
const (
	diskFileMax  = 32 << 20
	diskTotalMax = 256 << 20
)

// keeper holds the descriptors, by path, with how many sandboxes protect
// each path.
type keeper struct {
	mu    sync.Mutex
	max   int
	files map[string]*kept
	names map[string]int // base names of files, for a cheap first test (hasName)
	seq   atomic.Uint64  // temporary file names
	// notify is the watcher's fanotify group, in which each held inode is
	// marked for FAN_MODIFY; -1 without a watcher.
	notify int
	// snapUsed is the bytes of content held in snapshots, at most snapMax.
	snapUsed, snapFile, snapMax int
	// dir is the keep directory's descriptor, -1 without one: larger
	// files are copied there, diskUsed bytes of at most diskMax, each at
	// most diskFile.
	dir                         int
	dirPath                     string // where dir was opened: made again when removed (reset --force)
	diskUsed, diskFile, diskMax int64
	// log hears of files whose content is not kept.
	log *zap.Logger
}

type kept struct {
	fd   int // a descriptor of the file; dropped (-1) or absent (wasAbsent)
	refs int
	// data is the file's content when snap is set (a copy in memory, see
	// above), or disk is a copy of it in the keep directory (disk >= 0,
	// diskSize bytes); without either a restore reads the held inode.
	data     []byte
	snap     bool
	disk     int
	diskSize int64
	// noContent says why the content is not kept, when it is not.
	noContent string
}

// wasAbsent is the fd of a path that did not exist: undoing a rename to it
// removes what was moved there.
const wasAbsent = -2

// usable reports whether c says what to put back.
func (c *kept) usable() bool { return c.fd >= 0 || c.fd == wasAbsent }

func newKeeper(max int) *keeper {
	return &keeper{max: max, files: map[string]*kept{}, names: map[string]int{}, notify: -1,
		snapFile: snapFileMax, snapMax: snapTotalMax, dir: -1, diskFile: diskFileMax, diskMax: diskTotalMax,
		log: zap.NewNop()}
}

// useDir makes the keeper copy larger files into dir, which must be a
// directory of root's that no one else can write or list: it is made if
// missing, and refused (an error, no disk copies) otherwise. Missing
// parents are made 0755, not 0700 like dir: /var/lib/aigate also holds
// the trust records every user reads (and a missing /var/lib made 0700
// would close every other program's directory beneath it).
func (k *keeper) useDir(dir string) error {
	fd, err := openKeepDir(dir)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dir >= 0 {
		unix.Close(k.dir)
	}
	k.dir, k.dirPath = fd, dir
	return nil
}

// openKeepDir makes dir if missing and opens it, refusing one that is not
// root's with mode 0700 (useDir).
func openKeepDir(dir string) (int, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return -1, fmt.Errorf("keep directory %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return -1, fmt.Errorf("keep directory %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("keep directory %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("keep directory %s: %w", dir, err)
	}
	if st.Uid != 0 || st.Mode&0o077 != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("keep directory %s: owned by uid %d with mode %o, want root's with mode 0700: fix it with `sudo chown root: %s && sudo chmod 700 %s`",
			dir, st.Uid, st.Mode&0o7777, dir, dir)
	}
	return fd, nil
}

// snapshot takes the content of c's held inode into memory, or into the
// keep directory when it is too large for memory, within the budgets;
// otherwise c has none and c.noContent says why. Called with k.mu held.
func (k *keeper) snapshot(path string, c *kept) {
	// Said once per reason, not at each of the user's writes (resnap).
	was := c.noContent
	k.unsnap(c)
	if c.fd < 0 {
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(c.fd, &st); err != nil {
		c.noContent = "stat: " + err.Error()
		return
	}
	if st.Size <= int64(k.snapFile) && k.snapUsed+int(st.Size) <= k.snapMax && k.snapMemory(c, st.Size) {
		return
	}
	c.noContent = k.snapDisk(c, st.Size)
	if c.noContent != "" && c.noContent != was {
		k.log.Warn("aigate keeps no copy of this protected file's content: a truncate(2) of it inside a sandbox kills the sandbox but cannot be undone",
			zap.String("path", path), zap.Int64("size", st.Size), zap.String("why", c.noContent))
	}
}

// snapMemory reads the held inode into memory; false if it does not fit
// after all.
func (k *keeper) snapMemory(c *kept, size int64) bool {
	// One byte more than the size: a file that grew since the stat is
	// read whole or found too large.
	buf := make([]byte, size+1)
	n := 0
	for n < len(buf) {
		m, err := unix.Pread(c.fd, buf[n:], int64(n))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n > k.snapFile || k.snapUsed+n > k.snapMax {
		return false
	}
	c.data, c.snap = buf[:n:n], true
	k.snapUsed += n
	return true
}

// snapDisk copies the held inode into an unnamed file in the keep
// directory. It returns why not, or "".
func (k *keeper) snapDisk(c *kept, size int64) string {
	switch {
	case k.dir < 0:
		return fmt.Sprintf("past the in-memory bound (%d KiB a file, %d KiB in all) and no keep directory", k.snapFile>>10, k.snapMax>>10)
	case size > k.diskFile:
		return fmt.Sprintf("larger than the %d MiB bound of a copy", k.diskFile>>20)
	case k.diskUsed+size > k.diskMax:
		return fmt.Sprintf("the copies of protected files already take %d of %d MiB", k.diskUsed>>20, k.diskMax>>20)
	}
	fd, err := unix.Openat(k.dir, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil && k.dirPath != "" && dirRemoved(k.dir) {
		// The directory was removed since it was opened (`aigate reset
		// --force` removes /var/lib/aigate; a new file there then fails,
		// EPERM or ENOENT): made and opened again.
		if nd, derr := openKeepDir(k.dirPath); derr == nil {
			unix.Close(k.dir)
			k.dir = nd
			fd, err = unix.Openat(k.dir, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		}
	}
	if err != nil {
		return "keep directory: " + err.Error()
	}
	n, err := cloneOrCopy(fd, c.fd)
	if err == nil && (n > k.diskFile || k.diskUsed+n > k.diskMax) {
		err = fmt.Errorf("grew to %d bytes while copied, past the bound", n)
	}
	if err != nil {
		unix.Close(fd)
		return "copy: " + err.Error()
	}
	c.disk, c.diskSize, c.snap = fd, n, true
	k.diskUsed += n
	return ""
}

// dirRemoved reports whether the directory fd is open on has been removed
// (no links left).
func dirRemoved(fd int) bool {
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Nlink == 0
}

// cloneOrCopy puts src's content into dst (empty, at offset 0): a reflink
// where the filesystem shares extents between them, else a copy. It
// returns the bytes dst holds.
func cloneOrCopy(dst, src int) (int64, error) {
	if err := unix.IoctlFileClone(dst, src); err != nil {
		if err := copyFrom(dst, src); err != nil {
			return 0, err
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(dst, &st); err != nil {
		return 0, fmt.Errorf("stat the copy: %w", err)
	}
	return st.Size, nil
}

// unsnap forgets c's snapshot. Called with k.mu held.
func (k *keeper) unsnap(c *kept) {
	if c.snap {
		k.snapUsed -= len(c.data)
	}
	if c.disk >= 0 {
		unix.Close(c.disk)
		k.diskUsed -= c.diskSize
	}
	c.data, c.snap, c.disk, c.diskSize, c.noContent = nil, false, -1, 0, ""
}

// resnap takes the snapshot of path again: the user changed the held
// file in place.
func (k *keeper) resnap(path string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.files[path]; ok {
		k.snapshot(path, c)
	}
}

// hasContent reports whether path has a snapshot of its content: what a
// truncate left can be written back.
func (k *keeper) hasContent(path string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.files[path]
	return ok && c.snap
}

// whyNoContent says why path has no copy of its content ("" if it has).
func (k *keeper) whyNoContent(path string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.files[path]
	switch {
	case !ok:
		return "not held"
	case c.snap:
		return ""
	case c.noContent == "":
		return "no copy held"
	}
	return c.noContent
}

// watchModify marks the inode of fd for FAN_MODIFY in the watcher's group.
// A failure leaves truncate(2) of it unseen, as before the mark existed.
func (k *keeper) watchModify(fd int) {
	if k.notify >= 0 && fd >= 0 {
		_ = unix.FanotifyMark(k.notify, unix.FAN_MARK_ADD, unix.FAN_MODIFY, fd, "")
	}
}

// unwatchModify removes that mark, before fd is closed or handed back.
func (k *keeper) unwatchModify(fd int) {
	if k.notify >= 0 && fd >= 0 {
		_ = unix.FanotifyMark(k.notify, unix.FAN_MARK_REMOVE, unix.FAN_MODIFY, fd, "")
	}
}

// hold opens path (a regular file, not followed) once, or adds a reference.
// A path that does not exist is held as absent. It reports false past the
// bound or when path cannot be opened.
func (k *keeper) hold(path string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.files[path]; ok {
		c.refs++
		return true
	}
	if len(k.files) >= k.max {
		return false
	}
	fd, err := openRegular(unix.AT_FDCWD, path)
	if errors.Is(err, unix.ENOENT) {
		fd = wasAbsent
	} else if err != nil {
		return false
	}
	c := &kept{fd: fd, refs: 1, disk: -1}
	k.files[path] = c
	k.names[filepath.Base(path)]++
	k.watchModify(fd)
	k.snapshot(path, c)
	return true
}

// hasName reports whether some held path ends in name: most files created
// in the watched trees are not, and need no path lookup.
func (k *keeper) hasName(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.names[name] > 0
}

// release drops one reference; the descriptor goes with the last.
func (k *keeper) release(path string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.files[path]
	if !ok {
		return
	}
	if c.refs--; c.refs > 0 {
		return
	}
	if c.fd >= 0 {
		k.unwatchModify(c.fd)
		unix.Close(c.fd)
	}
	k.unsnap(c)
	delete(k.files, path)
	if base := filepath.Base(path); k.names[base] <= 1 {
		delete(k.names, base)
	} else {
		k.names[base]--
	}
}

// has reports whether path is held with a usable copy.
func (k *keeper) has(path string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.files[path]
	return ok && c.usable()
}

// heldKey tells what the keeper holds of path: the held inode (key), or
// that it holds the path as absent; usable is false when it holds
// nothing to put back (not held, or its copy dropped).
func (k *keeper) heldKey(path string) (key inodeKey, absent, usable bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.files[path]
	switch {
	case !ok || !c.usable():
		return inodeKey{}, false, false
	case c.fd == wasAbsent:
		return inodeKey{}, true, true
	}
	var st unix.Stat_t
	if unix.Fstat(c.fd, &st) != nil {
		return inodeKey{}, false, false
	}
	return keyOf(&st), false, true
}

// held reports whether path is held, with a copy or dropped.
func (k *keeper) held(path string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.files[path]
	return ok
}

// refresh holds what is now at name in dir (the file of path) instead of
// the old copy: the user replaced it. When nothing regular is there, the
// copy is dropped. It returns the old descriptor (or -1) for the caller to
// retire.
func (k *keeper) refresh(dir int, name, path string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.files[path]
	if !ok {
		return -1
	}
	old := c.fd
	k.unwatchModify(old)
	c.fd = -1
	fd, err := openRegular(dir, name)
	switch {
	case err == nil:
		c.fd = fd
		k.watchModify(fd)
	case errors.Is(err, unix.ENOENT):
		c.fd = wasAbsent // the user moved it away
	}
	k.snapshot(path, c)
	return old
}

// drop forgets the copy of path, keeping its references: when the new
// file cannot be held, nothing known is left to restore.
func (k *keeper) drop(path string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.files[path]; ok && c.fd >= 0 {
		k.unwatchModify(c.fd)
		unix.Close(c.fd)
		c.fd = -1
		k.unsnap(c)
	}
}

var errNotKept = errors.New("no copy of the file is held")

// dup returns a duplicate of the descriptor held for path, for the caller
// to close, or -1 when none is held.
func (k *keeper) dup(path string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.files[path]
	if !ok || c.fd < 0 {
		return -1
	}
	fd, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// restore writes the held copy of path back at name in dir (which must be
// the directory of path) and holds the restored file from then on: the
// snapshot of its content where there is one, else what the held inode
// holds. It returns the old descriptor for the caller to retire.
func (k *keeper) restore(dir int, name, path string) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.files[path]
	if !ok || !c.usable() {
		return -1, errNotKept
	}
	if c.fd == wasAbsent {
		// Absent before: remove the entry moved there (not followed; a
		// directory fails, and the caller kills).
		if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return -1, fmt.Errorf("restore %s (absent): %w", path, err)
		}
		return -1, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(c.fd, &st); err != nil {
		return -1, fmt.Errorf("restore %s: stat the copy: %w", path, err)
	}
	tmp := "." + name + ".aigate-restore." + strconv.FormatUint(k.seq.Add(1), 10)
	if len(tmp) > 255 {
		tmp = ".aigate-restore." + strconv.FormatUint(k.seq.Load(), 10)
	}
	fd, err := unix.Openat(dir, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, fmt.Errorf("restore %s: create %s: %w", path, tmp, err)
	}
	switch {
	case c.disk >= 0:
		_, err = cloneOrCopy(fd, c.disk)
	case c.snap:
		err = writeAll(fd, c.data)
	default:
		err = copyFrom(fd, c.fd)
	}
	if err == nil {
		err = unix.Fchown(fd, int(st.Uid), int(st.Gid))
	}
	if err == nil {
		err = unix.Fchmod(fd, st.Mode&0o7777)
	}
	if err == nil {
		err = unix.Fsync(fd)
	}
	if err == nil {
		err = unix.Renameat(dir, tmp, dir, name)
	}
	if err != nil {
		unix.Close(fd)
		_ = unix.Unlinkat(dir, tmp, 0)
		return -1, fmt.Errorf("restore %s: %w", path, err)
	}
	// The restored inode from now on, not the old one: that may lie
	// where the sandbox moved it.
	old := c.fd
	k.unwatchModify(old)
	c.fd = fd
	k.watchModify(fd)
	return old, nil
}

// copyFrom copies src from offset 0 to dst (at its offset): what the held
// inode holds now, the user's writes in place included.
func copyFrom(dst, src int) error {
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, err := unix.Pread(src, buf, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the copy: %w", err)
		}
		if n == 0 {
			break
		}
		if err := writeAll(dst, buf[:n]); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// writeAll writes all of w to dst at its offset.
func writeAll(dst int, w []byte) error {
	for len(w) > 0 {
		m, err := unix.Write(dst, w)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		w = w[m:]
	}
	return nil
}

// openRegular opens name in dir for reading, without following a symlink
// or blocking on a FIFO, and only if it is a regular file.
func openRegular(dir int, name string) (int, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: not a regular file", name)
	}
	return fd, nil
}

func (k *keeper) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.notify = -1 // closed with the watcher, its marks with it
	for _, c := range k.files {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		k.unsnap(c)
	}
	if k.dir >= 0 {
		unix.Close(k.dir)
		k.dir = -1
	}
	k.files = map[string]*kept{}
	k.names = map[string]int{}
	k.snapUsed, k.diskUsed = 0, 0
}
