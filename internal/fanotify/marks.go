//go:build linux

package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/resolve"
	"golang.org/x/sys/unix"
)

// inodeKey names a file independently of its path, so that a hard link or a
// bind mount of a protected file reaches the same rules.
type inodeKey struct{ dev, ino uint64 }

func keyOf(st *unix.Stat_t) inodeKey { return inodeKey{uint64(st.Dev), st.Ino} }

// fileRules are the rules that protect one inode, per access.
type fileRules struct{ read, write, exec policy.RuleID }

func (r fileRules) any() bool { return r.read != 0 || r.write != 0 || r.exec != 0 }

// mask is the marks an inode needs. A deny_exec file gets FAN_OPEN_PERM
// too: the dynamic loader run as the program opens it without an exec
// (loader.go).
func (r fileRules) mask() uint64 {
	var m uint64
	if r.any() {
		m |= unix.FAN_OPEN_PERM
	}
	if r.exec != 0 {
		m |= unix.FAN_OPEN_EXEC_PERM
	}
	return m
}

// marks are what one sandbox needs from the group. Each path is marked with
// its mask; a directory mask carries FAN_EVENT_ON_CHILD, so opens of the
// directory's entries (including files created later) are reported.
type markTable struct {
	mu      sync.Mutex
	group   int
	refs    map[string]map[uint32]uint64 // path -> sandbox id -> mask it needs
	applied map[string]uint64            // path -> mask set in the kernel
	protect map[inodeKey]int             // how many sandboxes protect the inode
	ignored map[inodeKey]string          // inodes with an ignore mask, and the path it was set through
	ignPath map[string]bool              // the paths of ignored
	maxIgn  int
	// linger is how long an exec-only mark stays in the kernel after the
	// last sandbox that needed it is removed (0: it goes at once);
	// execKey is the inode each exec-only mark was set on, lingering
	// the marks waiting to go, sweep the timer that removes them, and
	// closed says the group is gone (no mark calls after it).
	linger    time.Duration
	execKey   map[string]inodeKey
	lingering map[string]lingerMark
	sweep     *time.Timer
	closed    bool
}

// Why exec-only marks linger: every sandbox of a policy with deny_exec
// binaries marks /tmp, /var/tmp and /dev/shm for execs of their entries
// (copy.go), and adding a mark that reports a directory's children makes
// the kernel set a flag on every child dentry it has cached
// (fsnotify_set_children_dentry_flags), negative ones included: 3.7 ms
// for a busy /tmp, more than half of the agent's create for a sandbox
// around `true`. Removing the mark at the end and adding it again at the
// next create paid that walk every time. An exec-only mark that lingers
// costs a process outside every sandbox one round trip to the agent per
// exec of a file in that directory (the reader answers it at once: not
// in a sandbox), never a refusal, and only for linger after the last
// sandbox; the guard releases the group if the agent stops answering, as
// while a sandbox lives. Marks that report opens do not linger: every
// open in a marked home directory would pay that round trip.
type lingerMark struct {
	key   inodeKey // the inode the mark was set on
	until time.Time
}

func newMarkTable(group, maxIgnore int, linger time.Duration) *markTable {
	return &markTable{
		group:     group,
		refs:      map[string]map[uint32]uint64{},
		applied:   map[string]uint64{},
		protect:   map[inodeKey]int{},
		ignored:   map[inodeKey]string{},
		ignPath:   map[string]bool{},
		maxIgn:    maxIgnore,
		linger:    linger,
		execKey:   map[string]inodeKey{},
		lingering: map[string]lingerMark{},
	}
}

// execOnly reports whether a mark of mask may linger.
func execOnly(mask uint64) bool { return mask != 0 && mask&unix.FAN_OPEN_PERM == 0 }

// reuseLingering takes path out of the lingering marks before a sandbox
// needs it again. The mark is reused only if path still names the inode
// it was set on: a directory replaced since (rm -rf /tmp/x; mkdir /tmp/x)
// has no mark, so the table must not say it has.
func (t *markTable) reuseLingering(path string) {
	lm, ok := t.lingering[path]
	if !ok {
		return
	}
	delete(t.lingering, path)
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || keyOf(&st) != lm.key {
		delete(t.applied, path)
		delete(t.execKey, path)
	}
}

// sweepLingering removes the lingering marks whose time has come.
func (t *markTable) sweepLingering() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep = nil
	if t.closed {
		return
	}
	now := time.Now()
	var next time.Time
	for path, lm := range t.lingering {
		if now.Before(lm.until) {
			if next.IsZero() || lm.until.Before(next) {
				next = lm.until
			}
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil && keyOf(&st) == lm.key {
			// Best effort: a mark on an inode the path no longer names
			// cannot be reached by path; it goes with the inode or the
			// group.
			_ = unix.FanotifyMark(t.group, unix.FAN_MARK_REMOVE, t.applied[path], unix.AT_FDCWD, path)
		}
		delete(t.lingering, path)
		delete(t.applied, path)
		delete(t.execKey, path)
	}
	if !next.IsZero() {
		t.sweep = time.AfterFunc(time.Until(next), t.sweepLingering)
	}
}

// close stops the sweeps: the group is about to be closed, and a mark
// call on its number could reach another descriptor.
func (t *markTable) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.sweep != nil {
		t.sweep.Stop()
	}
}

// add applies a sandbox's plan. Protected inodes lose any ignore mask
// first: an ignore mask on an inode silences the inode's own mark too.
// unrelated files get an ignore mask unless matches (every live sandbox's
// matcher) says some sandbox cares about them.
func (t *markTable) add(id uint32, p *plan, matches func(string) bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.addMarksLocked(id, p); err != nil {
		return err
	}
	t.ignoreLocked(unrelatedKeys(p.unrelated, p.copies), matches)
	return nil
}

// addMarks is add without the ignore masks, which the caller sets after
// (ignore): protected inodes and directory marks are what enforcement
// needs; an ignore mask only spares an unrelated file's opens a round
// trip to the decision workers.
func (t *markTable) addMarks(id uint32, p *plan) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addMarksLocked(id, p)
}

func (t *markTable) addMarksLocked(id uint32, p *plan) error {
	for key, path := range p.protected {
		t.protect[key]++
		if ipath, ok := t.ignored[key]; ok {
			// Removed through the path the inode has now: an unrelated
			// file renamed to a protected name (found by the watcher,
			// protectNew) is no longer at ipath, and removing through
			// ipath failed with ENOENT and left the mask silencing it.
			// Then through ipath too, in case path names another inode
			// by now (removing its ignore mask costs a round trip only).
			err := t.unignore(path)
			if ipath != path {
				if ierr := t.unignore(ipath); err != nil {
					err = ierr
				}
			}
			if err != nil {
				return fmt.Errorf("remove ignore mark on %s (protected as %s): %w", ipath, path, err)
			}
			delete(t.ignored, key)
			delete(t.ignPath, ipath)
		}
	}
	for path, mask := range p.marks {
		t.reuseLingering(path)
		r := t.refs[path]
		if r == nil {
			r = map[uint32]uint64{}
			t.refs[path] = r
		}
		r[id] = mask
		want := t.applied[path] | mask
		if want == t.applied[path] && !p.fresh {
			continue
		}
		// The inode is taken before the mark, so that a path replaced
		// in between is taken for unmarked when its mark would be
		// reused (reuseLingering), never the reverse.
		var st unix.Stat_t
		keyed := t.linger > 0 && execOnly(want) && unix.Lstat(path, &st) == nil
		if err := unix.FanotifyMark(t.group, unix.FAN_MARK_ADD, want, unix.AT_FDCWD, path); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone since the walk; still matched by path if it comes back
			}
			return fmt.Errorf("fanotify mark %s: %w", path, err)
		}
		t.applied[path] = want
		if keyed {
			t.execKey[path] = keyOf(&st)
		} else {
			delete(t.execKey, path)
		}
	}
	return nil
}

// unignoreFile removes the ignore mask the table set on the file at path
// (symbolic links followed), if any.
func (t *markTable) unignoreFile(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil // nothing there to silence
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ipath, ok := t.ignored[keyOf(&st)]
	if !ok {
		return nil
	}
	if err := t.unignore(path); err != nil {
		return fmt.Errorf("remove ignore mark on %s: %w", path, err)
	}
	delete(t.ignored, keyOf(&st))
	delete(t.ignPath, ipath)
	return nil
}

// ignoresFile reports whether the file at path has an ignore mask.
func (t *markTable) ignoresFile(path string) bool {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ignored[keyOf(&st)] != ""
}

// unignore removes the ignore mask of the inode at path; nothing there,
// or no mark on it, is no error.
func (t *markTable) unignore(path string) error {
	err := unix.FanotifyMark(t.group, unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORED_MASK, permMask, unix.AT_FDCWD, path)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// ignore sets the ignore masks add would have set for unrelated (paths,
// stat'ed here a batch at a time, outside the table's lock, as
// unrelatedKeys does; copies as in the plan), a batch at a time so that
// the table is not held for the whole of a large home; it stops early,
// before a batch, when either stop channel is closed (the backend
// closing, the sandbox removed). before, when set, runs before each
// batch (tests).
func (t *markTable) ignore(unrelated []string, copies map[int64][]*execCopy, matches func(string) bool, closing, removed <-chan struct{}, before func()) {
	const batch = 512
	part := make(map[inodeKey]string, batch)
	flush := func() bool {
		if before != nil {
			before()
		}
		select {
		case <-closing:
			return false
		case <-removed:
			return false
		default:
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		t.ignoreLocked(part, matches)
		clear(part)
		return len(t.ignored) < t.maxIgn
	}
	for _, path := range unrelated {
		key, ok := unrelatedKey(path, copies)
		if !ok {
			continue
		}
		part[key] = path
		if len(part) < batch {
			continue
		}
		if !flush() {
			return
		}
	}
	if len(part) > 0 {
		flush()
	}
}

// unrelatedKeys are the inodes of the unrelated files at paths that may
// get an ignore mask (unrelatedKey).
func unrelatedKeys(paths []string, copies map[int64][]*execCopy) map[inodeKey]string {
	out := make(map[inodeKey]string, len(paths))
	for _, path := range paths {
		if key, ok := unrelatedKey(path, copies); ok {
			out[key] = path
		}
	}
	return out
}

// unrelatedKey stats an unrelated file for its ignore mask: only a regular
// file, and none whose size is a deny_exec binary's (it could be a copy,
// copy.go). Whether a sandbox protects the inode is asked when the mask
// is set (ignoreLocked).
func unrelatedKey(path string, copies map[int64][]*execCopy) (inodeKey, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || len(copies[st.Size]) > 0 {
		return inodeKey{}, false
	}
	return keyOf(&st), true
}

// ignoreLocked sets an ignore mask on each unrelated file that no sandbox
// protects by inode and that matches (every live sandbox's matcher but
// the one whose plan it is) does not match.
func (t *markTable) ignoreLocked(unrelated map[inodeKey]string, matches func(string) bool) {
	for key, path := range unrelated {
		if len(t.ignored) >= t.maxIgn {
			break
		}
		if t.protect[key] > 0 || t.ignored[key] != "" || matches(path) {
			continue
		}
		// Without FAN_MARK_IGNORED_SURV_MODIFY: the kernel drops the
		// ignore mask at the file's first modification (a write, a
		// truncate), so that an unrelated file overwritten in place
		// with a copy of a deny_exec binary is checked again when run
		// (TestDenyExecCopyOverIgnored); a modified file's opens are
		// round trips from then on. The table still lists it, which only
		// keeps it from getting a mask again.
		err := unix.FanotifyMark(t.group, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK, permMask, unix.AT_FDCWD, path)
		if err != nil {
			continue // an ignore mask is an optimisation only
		}
		t.ignored[key] = path
		t.ignPath[path] = true
	}
}

// ignorable reports whether an unrelated file at path could still get an
// ignore mask: the table has room, and path has none. Skipping one that
// has is safe whatever path now leads to: a missing ignore mask costs a
// round trip, never a check.
func (t *markTable) ignorable(path string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ignored) < t.maxIgn && !t.ignPath[path]
}

// remove drops what only sandbox id needed.
func (t *markTable) remove(id uint32, p *plan) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for key := range p.protected {
		if t.protect[key]--; t.protect[key] <= 0 {
			delete(t.protect, key)
		}
	}
	for path := range p.marks {
		r := t.refs[path]
		delete(r, id)
		var want uint64
		for _, m := range r {
			want |= m
		}
		if len(r) == 0 {
			delete(t.refs, path)
		}
		have := t.applied[path]
		if key, ok := t.execKey[path]; ok && want == 0 && execOnly(have) && t.linger > 0 && !t.closed {
			t.lingering[path] = lingerMark{key: key, until: time.Now().Add(t.linger)}
			if t.sweep == nil {
				t.sweep = time.AfterFunc(t.linger, t.sweepLingering)
			}
			continue
		}
		if drop := have &^ want; drop != 0 {
			err := unix.FanotifyMark(t.group, unix.FAN_MARK_REMOVE, drop, unix.AT_FDCWD, path)
			if err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove fanotify mark %s: %w", path, err))
			}
		}
		if want == 0 {
			delete(t.applied, path)
			delete(t.execKey, path)
		} else {
			t.applied[path] = want
		}
	}
	return errors.Join(errs...)
}

// flush removes every inode and directory mark of the group, ignore masks
// and lingering exec marks included, in one call, and empties the table.
// Only for a group no sandbox needs (Backend.flushIfEmpty). On an error
// nothing is forgotten: the caller removes the marks path by path.
func (t *markTable) flush() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	if err := unix.FanotifyMark(t.group, unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, ""); err != nil {
		return fmt.Errorf("flush fanotify marks: %w", err)
	}
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	clear(t.refs)
	clear(t.applied)
	clear(t.protect)
	clear(t.ignored)
	clear(t.ignPath)
	clear(t.execKey)
	clear(t.lingering)
	return nil
}

// unprotect drops one sandbox's protection of an inode that is gone.
func (t *markTable) unprotect(key inodeKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.protect[key]--; t.protect[key] <= 0 {
		delete(t.protect, key)
	}
}

// forget drops sandbox id's claim on path without touching the kernel:
// the path is gone, and its mark went with its inode.
func (t *markTable) forget(id uint32, path string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.refs[path]
	delete(r, id)
	var want uint64
	for _, m := range r {
		want |= m
	}
	if len(r) == 0 {
		delete(t.refs, path)
		delete(t.applied, path)
		delete(t.execKey, path)
		delete(t.lingering, path)
		return
	}
	t.applied[path] = want
}

// mask is the mask set in the kernel on path.
func (t *markTable) mask(path string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.applied[path]
}

func (t *markTable) counts() (marks, ignored int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.applied), len(t.ignored)
}

// plan is what one sandbox's policy needs marked, computed without touching
// the group. After Add it grows as directories appear in its trees
// (grow.go); the sandbox's mutex serialises that against Remove, and inoMu
// guards inodes, which the decision workers read.
type plan struct {
	marks  map[string]uint64
	inoMu  sync.RWMutex
	inodes map[inodeKey]fileRules // rules by inode: catch hard links and other paths
	// ids are the file handles of the inodes in inodes (fileID), where
	// the filesystem gives one: an inode number is reused for the next
	// file made once its file is freed (ext4 at once), and the handle,
	// which carries the inode's generation, tells the new file apart.
	ids       map[inodeKey]string
	protected map[inodeKey]string
	// unrelated are the regular files in marked directories that no rule
	// matches, by path: candidates for ignore masks, stat'ed only when
	// one is set, in the background (Backend.ignoreLater), not before the
	// command starts (a large home has hundreds of thousands).
	unrelated []string
	tree      map[string]treeDir // directories marked by a walk: new subdirectories join the tree
	dirs      int
	visited   int      // directories read by the walks: each at most once per mask
	cached    int      // of those, listed from the walk cache, not from the disk
	truncated []string // walks that stopped at the bound
	fresh     bool     // directories just created: mark even where the table says marked (an old inode at the same path)
	// copies are the deny_exec binaries' contents by size (copy.go); set
	// once by newPlan, read by the decision workers.
	copies map[int64][]*execCopy
	// unenforced are the warnings of Unenforced, from the same listing
	// of the exec directories as the marks.
	unenforced []string
}

// treeDir is a directory marked by a walk: the mask its new subdirectories
// get, and its inode, so that a directory re-created at the same path is
// told apart from the one that was marked.
type treeDir struct {
	mask uint64
	key  inodeKey
}

func newPlanMaps() *plan {
	return &plan{
		marks:     map[string]uint64{},
		inodes:    map[inodeKey]fileRules{},
		ids:       map[inodeKey]string{},
		protected: map[inodeKey]string{},
		tree:      map[string]treeDir{},
	}
}

// execPaths returns the paths of the inodes protected by an exec rule.
func (p *plan) execPaths() []string {
	p.inoMu.RLock()
	defer p.inoMu.RUnlock()
	var out []string
	for key, path := range p.protected {
		if p.inodes[key].exec != 0 {
			out = append(out, path)
		}
	}
	return out
}

// rulesOf returns the rules that protect inode key, which fd (the event's
// descriptor) is open on. None when the inode recorded under key was
// another file: one freed since (renamed over, removed by the user,
// replaced by a restore), whose number the filesystem gave to the file
// opened now. Only a handle read and found different says so; one that
// cannot be read keeps the rules (fail closed). The handle is read only
// for an inode with rules: the other opens pay nothing. fd -1: the rules
// recorded, unchecked.
func (p *plan) rulesOf(key inodeKey, fd int) fileRules {
	r, id := p.recorded(key)
	return confirmRules(r, id, fd)
}

// recorded returns the rules and file handle recorded for inode key,
// unchecked: rulesOf is recorded, then confirmRules.
func (p *plan) recorded(key inodeKey) (fileRules, string) {
	p.inoMu.RLock()
	defer p.inoMu.RUnlock()
	return p.inodes[key], p.ids[key]
}

// confirmRules returns r, recorded with handle id, if fd is open on that
// file, and no rules if the handle read from fd says another file has
// its number (rulesOf).
func confirmRules(r fileRules, id string, fd int) fileRules {
	if r.any() && id != "" {
		if now := fileID(fd); now != "" && now != id {
			return fileRules{}
		}
	}
	return r
}

// fileID is the file handle of the file fd is open on (name_to_handle_at,
// its type then its bytes: on ext4, xfs, btrfs and tmpfs the inode number
// and generation), or "" when the filesystem gives none. One system call,
// no I/O, a buffer on the stack.
func fileID(fd int) string {
	const maxHandle = 128 // MAX_HANDLE_SZ
	var buf [8 + maxHandle]byte
	binary.NativeEndian.PutUint32(buf[0:4], maxHandle)
	var mnt int32
	empty := [1]byte{}
	_, _, errno := unix.Syscall6(unix.SYS_NAME_TO_HANDLE_AT, uintptr(fd), uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&mnt)), unix.AT_EMPTY_PATH, 0)
	if errno != 0 {
		return ""
	}
	n := binary.NativeEndian.Uint32(buf[0:4])
	if n > maxHandle {
		return ""
	}
	return string(buf[4 : 8+n])
}

// identify returns the inode key and file handle (fileID) of the file at
// path, following symlinks as stat does, both read from one O_PATH
// descriptor so that they name the same file even if path is replaced
// meanwhile. An O_PATH open reports no fanotify event. regular says
// whether it is a regular file.
func identify(path string) (key inodeKey, id string, regular bool, err error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return inodeKey{}, "", false, err
	}
	defer unix.Close(fd)
	return identifyFd(fd)
}

// identifyFd is identify of the file fd is open on.
func identifyFd(fd int) (key inodeKey, id string, regular bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return inodeKey{}, "", false, err
	}
	return keyOf(&st), fileID(fd), st.Mode&unix.S_IFMT == unix.S_IFREG, nil
}

// planner walks the trees a policy needs, within bounds.
type planner struct {
	c       *policy.Compiled
	maxDirs int
	// maxUnrelated bounds the unrelated files recorded (0: no bound): they
	// are only candidates for ignore masks, which the mark table bounds
	// too, and each costs a stat. A large home has hundreds of thousands.
	maxUnrelated int
	p            *plan
	// cache, when set, holds listings from earlier walks (walkcache.go);
	// fp is the fingerprint of c it matched files for.
	cache *walkCache
	fp    [32]byte
	// ignorable, when set, says whether an unrelated file could still get
	// an ignore mask; when not, it is not stat'ed for one (a large home
	// has hundreds of thousands, and the table keeps them across runs).
	ignorable func(path string) bool
	// covered are the deny_write trees the sandbox's Landlock domain
	// keeps every link, rename and symlink out of
	// (enforce.Sandbox.LandlockCovers), as given and where their symlinks
	// lead: a file there matched by a deny_write rule alone is protected
	// by its directory's mark (every open of it goes through that
	// directory), not by an inode mark each.
	covered []string
}

// newPlan decides the marks for compiled policy c. home and project are the
// trees where name rules (".env", "*.pem") are looked for; execDirs where
// exec name rules are resolved; maxDirs bounds the directories walked and
// maxUnrelated the files recorded for ignore masks.
func newPlan(c *policy.Compiled, home, project string, execDirs []string, maxDirs, maxUnrelated int) (*plan, error) {
	return newPlanCached(c, home, project, execDirs, maxDirs, maxUnrelated, nil, nil, nil)
}

// newPlanCached is newPlan reusing and filling cache (nil: none),
// recording only the unrelated files ignorable accepts (nil: all), and
// marking no file of the covered trees by inode for a deny_write rule
// (planner.covered).
func newPlanCached(c *policy.Compiled, home, project string, execDirs []string, maxDirs, maxUnrelated int, cache *walkCache, ignorable func(string) bool, covered []string) (*plan, error) {
	pl := &planner{c: c, maxDirs: maxDirs, maxUnrelated: maxUnrelated, p: newPlanMaps(), cache: cache, ignorable: ignorable, covered: coveredTrees(c, covered)}
	if cache != nil {
		pl.fp = fingerprint(c)
	}
	// Listing the exec directories stats every name on PATH (thousands):
	// done once per sandbox, for the copies, the marks and the warnings,
	// and only for the symbolic links while a directory is unchanged
	// (resolve.ExecCache).
	named, shared := cache.execCache().ExecutablesShared(c.Exec, execDirs)
	pl.p.unenforced = unenforcedLines(shared)
	pl.p.copies = execSums(c, named)
	// Protected paths that exist: files by inode, directories as trees.
	// A deny_exec tree is marked for opens too, as its files are (mask).
	sets := []struct {
		set  policy.FileSet
		mask uint64
	}{{c.Read, unix.FAN_OPEN_PERM}, {c.Write, unix.FAN_OPEN_PERM}, {c.Exec, unix.FAN_OPEN_EXEC_PERM | unix.FAN_OPEN_PERM}}
	var errs []error
	for _, s := range sets {
		files, err := resolve.Paths(s.set)
		if err != nil {
			errs = append(errs, err)
		}
		for _, f := range files {
			if f.IsDir {
				pl.walk(f.Path, s.mask)
			} else {
				pl.file(f.Path)
			}
		}
	}
	// Name rules can match anywhere: cover the project and the home tree.
	var nameMask uint64
	if hasNames(c.Read) || hasNames(c.Write) {
		nameMask |= unix.FAN_OPEN_PERM
	}
	if hasNames(c.Exec) {
		nameMask |= unix.FAN_OPEN_EXEC_PERM
	}
	if nameMask != 0 {
		for _, root := range []string{project, home} {
			if root != "" {
				pl.walk(root, nameMask)
			}
		}
	}
	// Exec name rules: the binaries a shell would find, symlinks resolved,
	// protected by inode with the rule that named them.
	for _, f := range named {
		key, id, _, err := identify(f.Path)
		if err != nil {
			continue
		}
		pl.protectInode(f.Path, key, id, fileRules{exec: f.Rule})
	}
	pl.markCopyDirs()
	return pl.p, errors.Join(errs...)
}

func hasNames(s policy.FileSet) bool {
	return len(s.Names)+len(s.NamePrefix)+len(s.NameSuffix) > 0
}

// walk marks root and the directories below it, breadth first so that the
// bound cuts the deepest levels, not whole top-level subtrees. Symbolic links
// are not followed: what they point to is marked where it lives, if at all.
func (pl *planner) walk(root string, mask uint64) {
	queue := []string{root}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		if pl.walked(dir, mask) {
			// A tree walked already with these events (the project
			// inside the home tree, or the home itself as the project):
			// its subtree was too, so reading it again changes nothing.
			continue
		}
		if _, seen := pl.p.marks[dir]; !seen {
			if pl.p.dirs >= pl.maxDirs {
				pl.p.truncated = append(pl.p.truncated, root)
				return
			}
			pl.p.dirs++
		}
		queue = append(queue, pl.visit(dir, mask)...)
	}
}

// walked reports whether dir, the same inode, was visited by a walk whose
// mask covers mask.
func (pl *planner) walked(dir string, mask uint64) bool {
	td, ok := pl.p.tree[dir]
	if !ok || td.mask&mask != mask {
		return false
	}
	var st unix.Stat_t
	return unix.Lstat(dir, &st) == nil && keyOf(&st) == td.key
}

// visit marks one directory of a tree walked with mask and records its
// entries; it returns the subdirectories.
func (pl *planner) visit(dir string, mask uint64) []string {
	dmask := mask | unix.FAN_EVENT_ON_CHILD
	if r := pl.rules(dir); r.read != 0 {
		// Listing a denied directory is an open too (the LSM backend
		// refuses it in file_open); FAN_ONDIR reports it.
		dmask |= unix.FAN_OPEN_PERM | unix.FAN_ONDIR
	}
	pl.p.marks[dir] |= dmask
	pl.p.visited++
	statAt := time.Now()
	var st unix.Stat_t
	var l *listing
	if err := unix.Lstat(dir, &st); err == nil {
		pl.p.tree[dir] = treeDir{mask: mask | pl.p.tree[dir].mask, key: keyOf(&st)}
		l = pl.cache.lookup(dir, &st)
		if l == nil {
			var ok bool
			if l, ok = readListing(dir, stampOf(&st)); !ok {
				return nil
			}
			pl.cache.store(dir, l, statAt)
		} else {
			pl.p.cached++
		}
	} else if l, _ = readListing(dir, dirStamp{}); l == nil {
		return nil
	}
	prefix := filepath.Join(dir, "x")
	prefix = prefix[:len(prefix)-1] // dir cleaned, with its slash: Join per entry costs a Clean each
	subdirs := make([]string, len(l.subdirs))
	for i, name := range l.subdirs {
		subdirs[i] = prefix + name
	}
	if pl.cache != nil && pl.fp != ([32]byte{}) {
		// Only the matched files have rules, kept with the listing.
		matched := l.matchedRules(pl.c, pl.fp, prefix)
		covered := pl.inCovered(prefix)
		for _, name := range l.files {
			r, ok := matched[name]
			if ok && covered && r.write != 0 && r.read == 0 && r.exec == 0 {
				continue // as fileWith would, without the path
			}
			pl.fileWith(prefix+name, r)
		}
	} else {
		for _, name := range l.files {
			pl.file(prefix + name)
		}
	}
	for _, name := range l.links {
		// The open reaches the target; protect the target's inode
		// when its real path is denied.
		if real, err := filepath.EvalSymlinks(prefix + name); err == nil {
			if r := pl.rules(real); r.any() {
				pl.file(real)
			}
		}
	}
	return subdirs
}

// file records a regular file: protected by inode when a rule matches its
// path, otherwise a candidate for an ignore mask.
func (pl *planner) file(path string) { pl.fileWith(path, pl.rules(path)) }

// fileWith is file with the rules that match path already known.
func (pl *planner) fileWith(path string, r fileRules) {
	if r.write != 0 && r.read == 0 && r.exec == 0 && pl.inCovered(path) {
		return // its directory's mark reports every open of it
	}
	if !r.any() {
		if pl.maxUnrelated > 0 && len(pl.p.unrelated) >= pl.maxUnrelated || pl.ignorable != nil && !pl.ignorable(path) {
			return
		}
		pl.p.unrelated = append(pl.p.unrelated, path)
		return
	}
	key, id, regular, err := identify(path)
	if err != nil || !regular {
		return
	}
	pl.protectInode(path, key, id, r)
}

// fileFd is file for the file at path open as fd: the inode protected is
// fd's, whatever path names by now.
func (pl *planner) fileFd(path string, fd int) {
	r := pl.rules(path)
	if !r.any() {
		return
	}
	if key, id, regular, err := identifyFd(fd); err == nil && regular {
		pl.protectInode(path, key, id, r)
	}
}

// protectInode records rules r for the inode key (file handle id) found
// at path, with the rules already recorded for it unless those were of
// another file that had the number (another id).
func (pl *planner) protectInode(path string, key inodeKey, id string, r fileRules) {
	old := pl.p.inodes[key]
	if oldID := pl.p.ids[key]; oldID != "" && id != "" && oldID != id {
		old = fileRules{}
	}
	if r.read == 0 {
		r.read = old.read
	}
	if r.write == 0 {
		r.write = old.write
	}
	if r.exec == 0 {
		r.exec = old.exec
	}
	pl.p.inodes[key] = r
	if id != "" {
		pl.p.ids[key] = id
	} else {
		delete(pl.p.ids, key)
	}
	pl.p.protected[key] = path
	pl.p.marks[path] |= r.mask()
}

// coveredTrees are the trees that are deny_write directories of c,
// cleaned, each also where its symlinks lead (walks reach a tree by
// either path). Another tree named is ignored: the claim is meant for the
// user's caches, and honoured for nothing wider.
func coveredTrees(c *policy.Compiled, trees []string) []string {
	if len(trees) == 0 {
		return nil
	}
	files, _ := resolve.Paths(c.Write)
	dirs := map[string]bool{}
	for _, f := range files {
		if f.IsDir {
			dirs[f.Path] = true
		}
	}
	var out []string
	for _, t := range trees {
		if !filepath.IsAbs(t) {
			continue
		}
		t = filepath.Clean(t)
		real, err := filepath.EvalSymlinks(t)
		if err != nil || !dirs[t] && !dirs[real] {
			continue
		}
		out = append(out, t)
		if real != t {
			out = append(out, real)
		}
	}
	return out
}

// inCovered reports whether path lies beneath a covered tree.
func (pl *planner) inCovered(path string) bool {
	for _, t := range pl.covered {
		if strings.HasPrefix(path, t+"/") {
			return true
		}
	}
	return false
}

// rules asks the policy's reference matchers, so that this backend and the
// kernel programs agree on every verdict.
func (pl *planner) rules(path string) fileRules {
	return matchPath(pl.c, path)
}

// matchPath is MatchOpen (read, then write) and MatchExec with each set
// matched once: MatchExec falls back on the read set, whose answer is
// already known.
func matchPath(c *policy.Compiled, path string) fileRules {
	var r fileRules
	read, isRead := c.Read.Match(path)
	if isRead {
		r.read = read
	} else if id, ok := c.Write.Match(path); ok {
		r.write = id
	}
	if id, ok := c.Exec.Match(path); ok {
		r.exec = id
	} else if isRead {
		r.exec = read
	}
	return r
}
