//go:build linux

package fanotify

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/mountinfo"
	"github.com/aigate-dev/aigate/internal/policy"
)

// A copy of a deny_exec binary can be put in any directory the sandboxed
// user can write: /tmp/sub, /run/user/UID, a user-owned /srv/x or /opt/x,
// a second disk. Marking directories reports the execs of their direct
// children only, so while a sandbox has deny_exec binaries to compare
// with, the backend marks every filesystem of its mount namespace that
// can hold one for execs (FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM): every
// exec there is reported, whatever the directory, also through a bind
// mount or a copy of the mount tree in another mount namespace (unshare
// -m copies mounts, and a mount mark would not follow them; a Landlock
// domain refuses mount(2), so no new filesystem appears inside). Execs
// only: opens stay unreported.
//
// Skipped: filesystems mounted read-only (nobody writes a copy there),
// mounts with noexec (the kernel refuses every exec from them), and
// kernel filesystems that hold no user files. A filesystem whose mounts
// are all noexec is not marked; one exec-capable mount of it is enough.
//
// The cost falls on every exec on a marked filesystem on the machine while
// such a sandbox lives: one round trip to the agent, answered at once for a
// process outside every sandbox (BenchmarkExecFS). Rejected: a Landlock
// domain granting EXECUTE only beneath marked places and the system's
// directories. It costs nothing outside the sandbox, but its refusals
// carry no event, it refuses a program in any unusual place the user
// legitimately runs from (/srv/tool/bin, a second disk), and the loader
// route (ld.so opens the file, Landlock's EXECUTE is not asked) is the
// same either way.

// noUserFiles are filesystem types that hold no file a user can write.
var noUserFiles = map[string]bool{
	"proc": true, "sysfs": true, "cgroup": true, "cgroup2": true, "bpf": true,
	"debugfs": true, "tracefs": true, "securityfs": true, "pstore": true,
	"configfs": true, "fusectl": true, "devpts": true, "binfmt_misc": true,
	"efivarfs": true, "autofs": true, "nsfs": true,
}

// execFilesystems returns, per device, one mount point through which a
// filesystem that can hold and run a copy is reached: written-to and
// exec-capable somewhere in ms.
func execFilesystems(ms []mountinfo.Mount) map[uint64]string {
	out := map[uint64]string{}
	for _, m := range ms {
		if m.Has("noexec") || m.SuperHas("ro") || noUserFiles[m.FSType] {
			continue
		}
		dev := unix.Mkdev(m.Major, m.Minor)
		if _, ok := out[dev]; !ok {
			out[dev] = m.Point
		}
	}
	return out
}

// fsExecMarks are the filesystem exec marks, set while at least one
// sandbox with copies to compare with lives, in a group of their own with
// the ignore marks of the directories no sandbox can write into
// (execignore.go).
type fsExecMarks struct {
	mu     sync.RWMutex
	group  int
	users  map[uint32]bool
	marked map[uint64]string // device -> the mount point it was marked through
	stop   chan struct{}     // closed when the marks go: ends watch and learnLoop
	// linger is how long the marks stay after the last user (MarkLinger;
	// 0: they go with it); lingerSeq tells a pending expiry whether a user
	// came and went since it was set.
	linger    time.Duration
	lingerSeq uint64
	closed    bool // the group is closing: no more marks
	off       bool // tests: never mark (a kernel that refuses it)
	log       *zap.Logger

	// The ignore marks (execignore.go). noIgnore: none (tests, a kernel
	// without FAN_MARK_IGNORE); entryOK says whether a directory's file
	// lets it be ignored (Backend.execIgnorable); owners are every live
	// sandbox's owner, rootOwners how many are root; dirs and byWD the
	// ignored directories, by inode and by inotify watch; files the
	// loaders ignored by inode; inotify follows the ignored directories'
	// changes (-1 while no user); learning is ignoringLocked for learn,
	// which asks for directories through queue, once each (tried).
	noIgnore   bool
	entryOK    func(path string, key inodeKey, size int64) bool
	owners     map[uint32]uint32
	rootOwners int
	dirs       map[inodeKey]*ignoredDir
	byWD       map[int32]*ignoredDir
	files      map[string]bool
	inotify    int
	learning   atomic.Bool
	queue      chan string
	learnMu    sync.Mutex
	tried      map[string]bool
	// dirty: the directories being read (by inotify watch), true once a
	// change was reported in one; gen counts the sandboxes checked.
	dirty map[int32]bool
	gen   uint64
}

func newFSExecMarks(group int, off, noIgnore bool, linger time.Duration, log *zap.Logger) *fsExecMarks {
	return &fsExecMarks{group: group, users: map[uint32]bool{}, marked: map[uint64]string{}, off: off, linger: linger, log: log,
		noIgnore: noIgnore, entryOK: func(string, inodeKey, int64) bool { return false },
		owners: map[uint32]uint32{}, dirs: map[inodeKey]*ignoredDir{}, byWD: map[int32]*ignoredDir{},
		files: map[string]bool{}, inotify: -1, queue: make(chan string, 64), tried: map[string]bool{}, dirty: map[int32]bool{}}
}

// add marks, for sandbox id, every filesystem of the mount table that is
// not marked yet. The first user also starts watching the mount table: a
// filesystem mounted while such a sandbox lives (a USB disk, a network
// share) is marked within milliseconds (watch). A filesystem the kernel
// refuses to mark is logged and left to the directory marks (copyDirs, the
// project and home trees), as before. execDirs (the sandbox's PATH) are
// asked for ignore marks at once, in the background, rather than at their
// first exec.
func (f *fsExecMarks) add(id uint32, execDirs []string) {
	if f.off {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if f.stop == nil {
		// Opened before the marks are read, so that a mount between the
		// two is seen by the watcher.
		fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			f.log.Warn("filesystems mounted while a sandbox runs are not marked for execs: copies of deny_exec binaries run there", zap.Error(err))
			fd = -1
		}
		if !f.noIgnore {
			if f.inotify, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err != nil {
				f.inotify = -1
				f.log.Info("no ignore marks for exec directories: execs outside sandboxes stay round trips to aigate", zap.Error(err))
			}
		}
		f.stop = make(chan struct{})
		go f.watch(fd, f.inotify, f.stop)
		go f.learnLoop(f.stop)
	}
	f.users[id] = true
	f.markLocked()
	f.setLearningLocked()
	for _, d := range execDirs {
		f.learnDir(d)
	}
}

// watch marks the filesystems mounted while a user lives: the kernel
// reports a change of the mount table as POLLPRI on mountinfo. A mount
// is marked a poll wake-up after it appears; an exec from it in between
// is not reported (a window of milliseconds: TestDenyExecCopyOnLaterMount
// waits for the mark). It also reads ino, the inotify descriptor that
// follows the ignored directories (execignore.go), and closes both at
// stop.
func (f *fsExecMarks) watch(fd, ino int, stop chan struct{}) {
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if ino >= 0 {
		defer unix.Close(ino)
	}
	// A negative descriptor is left out by poll.
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}, {Fd: int32(ino), Events: unix.POLLIN}}
	buf := make([]byte, 16*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		select {
		case <-stop:
			return
		default:
		}
		// A timeout to notice stop: closing fd would not wake poll.
		n, err := unix.Poll(fds, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			f.log.Warn("stopped watching the mount table: filesystems mounted from now on are not marked for execs", zap.Error(err))
			f.mu.Lock()
			f.dropAllLocked()
			f.noIgnore = true
			f.setLearningLocked()
			f.mu.Unlock()
			return
		}
		if n <= 0 {
			continue
		}
		if fds[1].Revents != 0 && !f.readInotify(ino, buf) {
			fds[1].Fd = -1
		}
		if fds[0].Revents&(unix.POLLPRI|unix.POLLERR) == 0 {
			continue
		}
		f.mu.Lock()
		select {
		case <-stop:
		default:
			f.markLocked()
		}
		f.mu.Unlock()
	}
}

// markLocked marks what the mount table has that is not marked yet.
func (f *fsExecMarks) markLocked() {
	ms, err := mountinfo.Read()
	if err != nil {
		// What could be read is marked all the same.
		f.log.Warn("some filesystems are not marked for execs: copies of deny_exec binaries there are refused only in /tmp, /var/tmp, /dev/shm, the project and the home", zap.Error(err))
	}
	var errs []error
	for dev, point := range execFilesystems(ms) {
		if _, ok := f.marked[dev]; ok {
			continue
		}
		if err := unix.FanotifyMark(f.group, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, point); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", point, err))
			continue
		}
		f.marked[dev] = point
	}
	if len(errs) > 0 {
		f.log.Warn("copies of deny_exec binaries on these filesystems are refused only in the marked directories", zap.Error(errors.Join(errs...)))
	}
}

// close stops the watcher and any further mark, before the group closes.
func (f *fsExecMarks) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.setLearningLocked()
	if f.stop != nil {
		close(f.stop)
		f.stop = nil
	}
	for _, d := range f.dirs {
		unix.Close(d.fd)
	}
	clear(f.dirs)
	clear(f.byWD)
	f.inotify = -1 // watch closes it
}

// Why the marks linger: a sandbox of a user (not root) whose filesystems
// get these marks afresh has every directory of its PATH read and each of
// its files stat'ed again for an ignore mark (ignoreDir), 1,800 names on
// the development host: a quarter of the agent's CPU per `aigate run --
// true` (docs/performance.md), for a verdict that had not changed. So the
// marks, the ignore marks and the inotify watches that follow the ignored
// directories stay for linger after the last user when there are ignore
// marks to keep, as the exec-only directory marks do (marks.go); the next
// sandbox is checked against the ignored directories' files (check) as a
// sandbox added beside another is. Meanwhile an exec on a marked
// filesystem outside an ignored directory is a round trip to the agent,
// answered at once (never refused: no sandbox), and a change in an
// ignored directory still takes its mark away.

// remove drops sandbox id; the last one takes the marks away after
// linger, so that execs outside sandboxes stop paying for them.
func (f *fsExecMarks) remove(id uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.users[id] {
		return
	}
	delete(f.users, id)
	if len(f.users) > 0 {
		return
	}
	f.setLearningLocked()
	f.lingerSeq++
	// Only ignore marks make the linger worth it: without them (a root
	// sandbox took them away, or none qualified) every exec on the marked
	// filesystems would be a round trip meanwhile, the client's and the
	// exec helper's of the next run included, to save a read of the mount
	// table.
	if f.linger > 0 && !f.closed && f.stop != nil && len(f.dirs) > 0 {
		seq := f.lingerSeq
		time.AfterFunc(f.linger, func() { f.expire(seq) })
		return
	}
	f.dropMarksLocked()
}

// expire takes the marks away once they have lingered, unless a user
// came since remove set it (seq).
func (f *fsExecMarks) expire(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq != f.lingerSeq || len(f.users) > 0 {
		return
	}
	f.dropMarksLocked()
}

// dropMarksLocked takes every mark of the group away and stops following
// the mount table and the ignored directories.
func (f *fsExecMarks) dropMarksLocked() {
	if f.stop != nil {
		close(f.stop)
		f.stop = nil
	}
	if f.closed {
		return
	}
	for dev, point := range f.marked {
		// A mount point that now leads elsewhere fails (the mark stays
		// until the group closes: extra round trips, never a refusal).
		if err := unix.FanotifyMark(f.group, unix.FAN_MARK_REMOVE|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, point); err != nil {
			f.log.Debug("filesystem exec mark not removed", zap.String("mount", point), zap.Error(err))
		}
		delete(f.marked, dev)
	}
	// The group's inode marks are all ignore marks: directories and
	// loaders.
	if err := unix.FanotifyMark(f.group, unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, ""); err != nil {
		f.log.Debug("exec ignore marks not flushed", zap.Error(err))
	}
	for _, d := range f.dirs {
		unix.Close(d.fd)
	}
	clear(f.dirs)
	clear(f.byWD)
	clear(f.files)
	f.inotify = -1 // watch closes it
	f.setLearningLocked()
	f.learnMu.Lock()
	clear(f.tried)
	f.learnMu.Unlock()
}

// covers reports whether every exec on device dev is reported.
func (f *fsExecMarks) covers(dev uint64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.marked[dev]
	return ok
}

// reports reports whether the exec of a file in dir on device dev is
// reported in the exec group: its filesystem is marked and dir has no
// ignore mark.
func (f *fsExecMarks) reports(dev uint64, dir string) bool {
	return f.covers(dev) && !f.ignores(dir)
}

// The kernel opens a dynamically linked program's interpreter for its exec
// too (open_exec, FAN_OPEN_EXEC_PERM): with every filesystem marked, each
// such exec on the machine would be two round trips. The loaders get an
// ignore mask, as unrelated files do, unless a live sandbox protects one
// by inode or matches it by path (its own path or where its links lead),
// or it has a deny_exec binary's size. The loader check (loader.go) needs
// no event of the loader itself: it decides on the open of the denied
// file and on /proc/TID/exe.

// loaderNames returns each loader path with the path its links lead to.
func (b *Backend) loaderNames() map[string]string {
	out := map[string]string{}
	for _, p := range b.ldso.loaderPaths() {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			out[p] = real
		}
	}
	return out
}

// ignoreLoaders sets the loaders' ignore masks for a sandbox with copies
// to compare (plan p).
func (b *Backend) ignoreLoaders(p *plan) {
	var paths []string
	for path, real := range b.loaderNames() {
		if !b.anyMatch(path) && !b.anyMatch(real) {
			paths = append(paths, real)
		}
	}
	b.marks.ignore(paths, p.copies, b.anyMatch, b.closing, nil, nil)
	// The same mask in the exec group, where the filesystem marks are:
	// on the loaders the first group's checks let through.
	for _, path := range paths {
		if b.marks.ignoresFile(path) {
			b.fsexec.ignoreFile(path)
		}
	}
}

// unignoreLoaders takes the ignore mask off every loader policy c matches
// by path, before the sandbox runs: an ignore mask would silence its
// exec events, whichever mark asks for them.
func (b *Backend) unignoreLoaders(c *policy.Compiled) error {
	var errs []error
	for path, real := range b.loaderNames() {
		if matchPath(c, path).any() || matchPath(c, real).any() {
			errs = append(errs, b.marks.unignoreFile(real), b.fsexec.unignoreFile(real))
		}
	}
	return errors.Join(errs...)
}

// anyMatch reports whether some live sandbox's policy matches path.
func (b *Backend) anyMatch(path string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, s := range b.sandboxes {
		if matchPath(s.Policy, path).any() {
			return true
		}
	}
	return false
}
