//go:build linux

package fanotify

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Putting a protected tree back. `rm -rf .git && cp -a /tmp/g .git` (or
// `mv .git /tmp/x && mv /tmp/g .git`) removes a directory above the
// deny_write paths and plants a prepared one; fanotify sees the removal
// only after the fact and the sandbox is killed (rename.go), but a fast
// copy lands first, and the planted hook would run at the user's next
// `git commit`. So once the sandbox is killed (and its cgroup empty: no
// process of it can race what follows), every protected place beneath
// the removed directory is swept:
//
//   - a protected file the keeper holds is left when the held inode is at
//     its path, else whatever is there is moved aside and the held copy
//     written back (keep.go's restore);
//   - a directory that was there at the start (the plan's tree) is kept,
//     or made again if it is a protected one (.git/hooks, not .git) and a
//     held file belongs in it; anything else at its path (a symlink to
//     ~/.ssh, a file) is moved aside first; and inside a protected
//     place every entry that is neither a held file nor such a directory
//     (a new hook, a planted config, a symlink) is moved aside;
//   - a protected file without a copy (past the keeper's bounds) is left
//     if it is still the file found at the start (its inode and file
//     handle); otherwise it cannot be written back: whatever is at its
//     path is moved aside (a missing hook is safe, a planted one is not)
//     and the event says not undone.
//
// "Moved aside" is a rename into a new directory of the user's,
// .aigate-quarantine/<time>-<sandbox> beside the swept directory (its
// parent: the project for .git), where the user can inspect it; one
// event (op planted) names each entry and where it went. The tree is the
// attacker's: nothing is followed. Each directory is opened from its
// parent's descriptor (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), each
// entry looked at with AT_SYMLINK_NOFOLLOW, renamed with
// RENAME_NOREPLACE, and found in the quarantine as the inode looked at
// before (else what was moved is reported, and the name looked at again).
// Only names beneath the swept directory's parent are ever renamed or
// written, so a planted `hooks -> ~/.ssh` is moved aside as a symlink
// and nothing in ~/.ssh is touched.

// sweepJob is one directory to sweep after the kill, and the operation
// (rename or delete) whose event asked for it.
type sweepJob struct {
	path string
	op   events.Op
}

// killAndSweep kills s and then sweeps the protected places at or
// beneath path (rename.go: a directory above a protected path, or a
// protected file that could not be put back). One goroutine per
// sandbox does both; jobs that come meanwhile join its queue. Remove
// waits for it (waitSweeps) before it releases the keeper's copies.
func (b *Backend) killAndSweep(s *sandbox, path string, op events.Op) {
	s.sweepMu.Lock()
	if s.sweepClosed {
		s.sweepMu.Unlock()
		go killCgroup(s.CgroupPath)
		return
	}
	s.sweepJobs = append(s.sweepJobs, sweepJob{path: path, op: op})
	if s.sweepDone != nil {
		s.sweepMu.Unlock()
		return
	}
	// Close waits for the sweeps (they emit events and read the keeper,
	// which it closes); once it has begun the guard kills the sandbox.
	b.ignMu.Lock()
	closed := b.ignClosed
	if !closed {
		b.sweeps.Add(1)
	}
	b.ignMu.Unlock()
	if closed {
		s.sweepJobs = nil
		s.sweepMu.Unlock()
		go killCgroup(s.CgroupPath)
		return
	}
	done := make(chan struct{})
	s.sweepDone = done
	s.sweepMu.Unlock()
	go func() {
		defer b.sweeps.Done()
		// Frozen first, then cgroup.kill, waited for until the cgroup is
		// empty: nothing of the sandbox is left to plant again behind the
		// sweep. A process that outlives the kill's bound (stuck in the
		// kernel) stays frozen: it runs no more code of its own.
		writeCgroup(s.CgroupPath, "cgroup.freeze", true)
		killCgroup(s.CgroupPath)
		for {
			s.sweepMu.Lock()
			jobs := s.sweepJobs
			s.sweepJobs = nil
			if len(jobs) == 0 {
				s.sweepDone = nil
				s.sweepMu.Unlock()
				close(done)
				return
			}
			s.sweepMu.Unlock()
			b.sweep(s, jobs)
		}
	}()
}

// waitSweeps waits for s's sweep to end and refuses later ones (their
// sandboxes are then only killed): the keeper's copies go with Remove.
func (s *sandbox) waitSweeps() {
	s.sweepMu.Lock()
	s.sweepClosed = true
	done := s.sweepDone
	s.sweepMu.Unlock()
	if done != nil {
		<-done
	}
}

// sweep sweeps the jobs' directories, each once, the outermost first.
func (b *Backend) sweep(s *sandbox, jobs []sweepJob) {
	for i := range jobs {
		jobs[i].path = sweepRoot(s.Policy, jobs[i].path)
	}
	sort.Slice(jobs, func(i, j int) bool { return len(jobs[i].path) < len(jobs[j].path) })
	var done []string
	for _, j := range jobs {
		if slicesAny(done, func(d string) bool { return within(j.path, d) }) {
			continue
		}
		done = append(done, j.path)
		sw := b.newSweeper(s, j)
		if err := sw.run(); err != nil {
			b.log.Warn("a protected tree a sandbox removed or replaced could not be swept: planted files may be left",
				zap.String("sandbox", s.Name), zap.String("path", j.path), zap.Error(err))
		}
		sw.close()
	}
}

func slicesAny(list []string, f func(string) bool) bool {
	for _, v := range list {
		if f(v) {
			return true
		}
	}
	return false
}

// sweepRoot is the directory to sweep for a move or delete of path: the
// deny_write path entry path lies in (all of .git/hooks for one hook
// without a copy), else path itself (a directory above protected paths).
func sweepRoot(c *policy.Compiled, path string) string {
	root := path
	for _, e := range c.Write.Paths {
		if within(path, e.Value) && len(e.Value) < len(root) {
			root = e.Value
		}
	}
	return root
}

// sweeper sweeps one directory of one sandbox.
type sweeper struct {
	b    *Backend
	s    *sandbox
	op   events.Op
	root string
	// targets are the paths at or beneath root that the sweep must reach:
	// the deny_write path entries and the files the sandbox's keeper
	// references hold (or could not hold).
	targets []string
	kept    map[string]bool
	q       quarantine
}

func (b *Backend) newSweeper(s *sandbox, j sweepJob) *sweeper {
	sw := &sweeper{b: b, s: s, op: j.op, root: j.path, kept: map[string]bool{}}
	sw.q.top, sw.q.dir = -1, -1
	add := func(p string) {
		if within(p, j.path) {
			sw.targets = append(sw.targets, p)
		}
	}
	for _, e := range s.Policy.Write.Paths {
		add(e.Value)
	}
	for _, p := range s.kept {
		sw.kept[p] = true
		add(p)
	}
	for p := range s.unkept {
		add(p)
	}
	return sw
}

func (sw *sweeper) close() { sw.q.close() }

// run opens the root's parent (no symlink on the way) and sweeps the root.
func (sw *sweeper) run() error {
	if len(sw.targets) == 0 {
		return nil
	}
	parent := filepath.Dir(sw.root)
	pfd, err := unix.Openat2(unix.AT_FDCWD, parent, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return fmt.Errorf("open %s: %w", parent, err)
	}
	defer unix.Close(pfd)
	sw.q.parent, sw.q.parentPath = pfd, parent
	sw.q.sandbox = sw.s.Name
	sw.entry(pfd, parent, filepath.Base(sw.root), 0)
	return nil
}

// maxSweepDepth bounds the recursion into protected directories.
const maxSweepDepth = 32

// entry sweeps name in dir (dirPath/name).
func (sw *sweeper) entry(dir int, dirPath, name string, depth int) {
	path := filepath.Join(dirPath, name)
	for try := 0; try < 4; try++ {
		var st unix.Stat_t
		err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		exists := err == nil
		if err != nil && !errors.Is(err, unix.ENOENT) {
			sw.b.log.Warn("sweep: cannot look at a protected path", zap.String("path", path), zap.Error(err))
			return
		}
		again := false
		switch {
		case sw.kept[path]:
			again = sw.keptFile(dir, name, path, exists, &st)
		case sw.isUnkept(path):
			if exists && sw.s.unkept[path].is(dir, name, &st) {
				return // the user's file, where it was
			}
			if exists {
				again = !sw.moveAside(dir, name, path, &st)
			}
			if !again {
				sw.lost(path, "no copy of it was held (past the keeper's bound)")
			}
		case sw.wasDir(path):
			sw.directory(dir, name, path, exists, &st, depth)
		case exists && sw.protected(path):
			again = !sw.moveAside(dir, name, path, &st)
		}
		if !again {
			return
		}
	}
	sw.b.log.Warn("sweep: a protected path kept changing; left as it is", zap.String("path", path))
}

// keptFile handles a path the keeper holds: left if it is the held inode,
// else what is there is moved aside and the copy written back (or, held
// as absent, only moved aside). It reports whether to look again.
func (sw *sweeper) keptFile(dir int, name, path string, exists bool, st *unix.Stat_t) bool {
	key, absent, usable := sw.b.keep.heldKey(path)
	if exists && usable && !absent && keyOf(st) == key {
		return false // the protected file itself
	}
	if exists && !sw.moveAside(dir, name, path, st) {
		return true
	}
	switch {
	case absent:
		return false
	case !usable: // its copy was dropped: gone or moved aside, it is lost
		sw.lost(path, sw.b.keep.whyNoContent(path))
		return false
	}
	old, err := sw.b.keep.restore(dir, name, path)
	sw.b.retire(old)
	if err != nil {
		sw.b.log.Warn("sweep: a protected file could not be written back", zap.String("sandbox", sw.s.Name), zap.String("path", path), zap.Error(err))
		sw.lost(path, err.Error())
		return false
	}
	sw.b.protectRestored(filepath.Dir(path), path)
	sw.report(events.Event{Op: sw.op, Path: path, Restored: true})
	return false
}

// directory handles a path that was a directory at the start: something
// else there is moved aside; a missing one is made again when a held file
// belongs beneath it; then what lies in it is swept.
func (sw *sweeper) directory(dir int, name, path string, exists bool, st *unix.Stat_t, depth int) {
	if depth > maxSweepDepth {
		return
	}
	if exists && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if !sw.moveAside(dir, name, path, st) {
			return
		}
		exists = false
	}
	if !exists {
		// Only a protected directory is made again (.git/hooks, for the
		// hooks held), never one above it: an empty .git would be no
		// repository, and stand where the user may move theirs back.
		if !sw.protected(path) || !sw.keptBeneath(path) {
			return
		}
		if err := mkdirLike(dir, name); err != nil {
			sw.b.log.Warn("sweep: cannot make a protected directory again", zap.String("path", path), zap.Error(err))
			return
		}
	}
	sub, err := unix.Openat2(dir, name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		sw.b.log.Warn("sweep: cannot open a protected directory", zap.String("path", path), zap.Error(err))
		return
	}
	defer unix.Close(sub)
	names := map[string]bool{}
	if sw.protected(path) {
		// Inside a protected place: every entry is looked at.
		list, err := listDir(sub)
		if err != nil {
			sw.b.log.Warn("sweep: cannot list a protected directory", zap.String("path", path), zap.Error(err))
		}
		for _, n := range list {
			names[n] = true
		}
	}
	for _, t := range sw.targets {
		if rest, ok := strings.CutPrefix(t, path+"/"); ok {
			names[strings.SplitN(rest, "/", 2)[0]] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		// A restore's temporary file (keep.go) is the watcher's, in flight.
		if !isRestoreTemp(n) {
			sorted = append(sorted, n)
		}
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		sw.entry(sub, path, n, depth+1)
	}
}

// isRestoreTemp reports whether n is the name keep.go's restore gives its
// temporary file: "." + name + ".aigate-restore." + a number, nothing
// after the number (a planted "x.aigate-restore.1.desktop" is not one).
func isRestoreTemp(n string) bool {
	i := strings.LastIndex(n, ".aigate-restore.")
	if i < 0 || !strings.HasPrefix(n, ".") {
		return false
	}
	num := n[i+len(".aigate-restore."):]
	if num == "" {
		return false
	}
	for _, c := range num {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// mkdirLike makes name in dir, owned by dir's owner, mode 0755.
func mkdirLike(dir int, name string) error {
	var pst unix.Stat_t
	if err := unix.Fstat(dir, &pst); err != nil {
		return err
	}
	if err := unix.Mkdirat(dir, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return unix.Fchownat(dir, name, int(pst.Uid), int(pst.Gid), unix.AT_SYMLINK_NOFOLLOW)
}

// listDir returns the names in the directory fd is open on.
func listDir(fd int) ([]string, error) {
	d, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

func (sw *sweeper) isUnkept(path string) bool {
	_, ok := sw.s.unkept[path]
	return ok
}

// startFile is a protected file found at the start without a copy: its
// inode and file handle, which tell it from a new file given its number.
type startFile struct {
	key inodeKey
	id  string
}

// is reports whether name in dir (st) is that file: the same inode and,
// where the filesystem gives handles, the same handle (a freed number
// is reused at once on ext4; the handle's generation differs).
func (f startFile) is(dir int, name string, st *unix.Stat_t) bool {
	if keyOf(st) != f.key || st.Mode&unix.S_IFMT != unix.S_IFREG || f.id == "" {
		return false
	}
	fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var now unix.Stat_t
	return unix.Fstat(fd, &now) == nil && keyOf(&now) == f.key && fileID(fd) == f.id
}

// wasDir reports whether path was a directory of the sandbox's tree at
// its start (above or in a protected place).
func (sw *sweeper) wasDir(path string) bool {
	_, ok := sw.s.startDirs[path]
	return ok
}

// protected reports whether path is in a protected place: a deny_write
// path entry or beneath one.
func (sw *sweeper) protected(path string) bool {
	for _, e := range sw.s.Policy.Write.Paths {
		if within(path, e.Value) {
			return true
		}
	}
	return false
}

// keptBeneath reports whether a held file belongs beneath path.
func (sw *sweeper) keptBeneath(path string) bool {
	for p := range sw.kept {
		if strings.HasPrefix(p, path+"/") {
			if _, absent, usable := sw.b.keep.heldKey(p); usable && !absent {
				return true
			}
		}
	}
	return false
}

// moveAside renames name (path) in dir into the quarantine, and reports
// whether what it moved is the inode st describes. What it moved is
// reported either way.
func (sw *sweeper) moveAside(dir int, name, path string, st *unix.Stat_t) bool {
	qname, to, err := sw.q.move(dir, name)
	if err != nil {
		sw.b.log.Warn("sweep: an entry planted in a protected place could not be moved aside", zap.String("sandbox", sw.s.Name),
			zap.String("path", path), zap.Error(err))
		sw.report(events.Event{Op: events.OpPlanted, Path: path})
		return true // nothing more can be done about it
	}
	sw.report(events.Event{Op: events.OpPlanted, Path: path, MovedTo: to})
	var got unix.Stat_t
	if err := unix.Fstatat(sw.q.dir, qname, &got, unix.AT_SYMLINK_NOFOLLOW); err != nil || keyOf(&got) != keyOf(st) {
		sw.b.log.Warn("sweep: the entry moved aside is not the one looked at (changed meanwhile): looked at again",
			zap.String("path", path), zap.String("moved_to", to))
		return false
	}
	return true
}

// lost reports a protected file whose content could not be put back.
func (sw *sweeper) lost(path, why string) {
	sw.b.log.Warn("a protected file under a tree a sandbox removed or replaced could not be written back: what was there is moved aside, the file is lost",
		zap.String("sandbox", sw.s.Name), zap.String("path", path), zap.String("why", why))
	sw.report(events.Event{Op: sw.op, Path: path})
}

// report emits one event of the sweep, as the sandbox's.
func (sw *sweeper) report(e events.Event) {
	s := sw.s
	e.Time, e.Sandbox, e.CgroupID, e.Kind, e.Backend = time.Now(), s.Name, s.CgroupID, events.KindFile, "fanotify"
	if id, ok := replaces(s.Policy, e.Path); ok {
		e.Rule = uint32(id)
		if r, ok := s.Policy.Rule(id); ok {
			e.RuleText = r.Pattern
		}
	}
	sw.b.stats.violation(e.Kind, e.Op, false)
	sw.b.emit(e)
}

// quarantineDir is the name of the directory entries are moved aside to,
// in the swept directory's parent.
const quarantineDir = ".aigate-quarantine"

// quarantine is the directory one sweep moves entries into, made at its
// first use: parent/.aigate-quarantine/<time>-<sandbox>, owned by
// parent's owner, mode 0700.
type quarantine struct {
	parent     int // not owned
	parentPath string
	sandbox    string
	top, dir   int
	path       string
	n          int
}

func (q *quarantine) open() error {
	if q.dir >= 0 {
		return nil
	}
	var pst unix.Stat_t
	if err := unix.Fstat(q.parent, &pst); err != nil {
		return err
	}
	if err := unix.Mkdirat(q.parent, quarantineDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("make %s: %w", quarantineDir, err)
	}
	how := &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	top, err := unix.Openat2(q.parent, quarantineDir, how)
	if err != nil {
		return fmt.Errorf("open %s: %w", quarantineDir, err)
	}
	_ = unix.Fchown(top, int(pst.Uid), int(pst.Gid))
	base := time.Now().UTC().Format("20060102T150405Z") + "-" + safeName(q.sandbox)
	name := base
	for i := 2; ; i++ {
		err = unix.Mkdirat(top, name, 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) || i > 100 {
			unix.Close(top)
			return fmt.Errorf("make %s/%s: %w", quarantineDir, name, err)
		}
		name = base + "-" + strconv.Itoa(i)
	}
	dir, err := unix.Openat2(top, name, how)
	if err != nil {
		unix.Close(top)
		return fmt.Errorf("open %s/%s: %w", quarantineDir, name, err)
	}
	_ = unix.Fchown(dir, int(pst.Uid), int(pst.Gid))
	q.top, q.dir = top, dir
	q.path = filepath.Join(q.parentPath, quarantineDir, name)
	return nil
}

// move renames name in dir into the quarantine, under a new name (a
// number and the old name); it returns that name and its path.
func (q *quarantine) move(dir int, name string) (string, string, error) {
	if err := q.open(); err != nil {
		return "", "", err
	}
	q.n++
	qname := fmt.Sprintf("%03d-%s", q.n, name)
	if len(qname) > 255 {
		qname = qname[:255]
	}
	if err := unix.Renameat2(dir, name, q.dir, qname, unix.RENAME_NOREPLACE); err != nil {
		return "", "", fmt.Errorf("move %s to %s: %w", name, q.path, err)
	}
	return qname, filepath.Join(q.path, qname), nil
}

func (q *quarantine) close() {
	if q.dir >= 0 {
		unix.Close(q.dir)
	}
	if q.top >= 0 {
		unix.Close(q.top)
	}
	q.dir, q.top = -1, -1
}

// safeName keeps letters, digits, '-', '_' and '.' of s (a sandbox name
// in a directory name).
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// within reports whether path is dir or beneath it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir) && len(path) > len(dir) && (path[len(dir)] == '/' || dir == "/")
}
