//go:build linux

package resolve

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Resolving exec name rules lists every directory on PATH and stats every
// name in it (1,500 in /usr/bin): more than a third of the agent's CPU for a
// sandbox around `true`. An ExecCache keeps, per directory, the names and
// what each non-symlink name is (device and inode), for as long as that
// provably cannot have changed; a later resolution then stats only the
// symbolic links.
//
// What proves it, and why it is exact (a stale entry could leave a
// deny_exec binary unmarked, or mistake it for a multi-call binary and
// leave it out):
//   - The names in a directory, and which of them are symbolic links,
//     change only through the directory (create, unlink, rename, link),
//     which sets its mtime and ctime; utimes can put the mtime back but not
//     the ctime. The directory is stat'ed by path on every use, so one
//     replaced or mounted over has another device or inode. Its times are
//     trusted only on local filesystems (LocalTimesFS) and only when older
//     than RacyMargin before the stat (a change in the same clock tick can
//     leave them equal), as internal/fanotify's walk cache does.
//   - What a name that is not a symbolic link leads to changes only through
//     the directory too (a rename over it), or through a mount on it: a
//     file bind-mounted over /usr/bin/nc changes what nc runs without
//     touching /usr/bin. Any mount or unmount in the agent's mount
//     namespace (propagated ones included) makes /proc/self/mountinfo poll
//     readable with POLLPRI; the cache polls it on every use and forgets
//     everything when it fired.
//   - A symbolic link's target string never changes (a link is replaced
//     through its directory), but what it leads to lives in other
//     directories (/etc/alternatives). So each link's resolution is kept
//     with the stamp of every directory a name was looked up in on the
//     way (each ancestor of each path of the chain, which must all be
//     real directories, not links), and reused only while each of those
//     is unchanged, by the same proof as above; one lstat per directory
//     per resolution, shared by the ~450 links of a Debian /usr/bin,
//     instead of a path walk per link. A chain that cannot be followed
//     that way (a link among the ancestors, "a/../b" in a target, more
//     than 40 hops) is stat'ed on every use, as before.
//   - The matched names are resolved again on every use (EvalSymlinks and
//     stat in ExecutablesShared), so the files marked are what the names
//     lead to now.
//
// The cache resolves in the mount namespace of the process that holds it,
// as the uncached resolution does.

// RacyMargin is how old a directory's times must be for a listing of it to
// be kept: far more than a clock tick. (internal/fanotify's walk cache
// uses it too.)
const RacyMargin = 2 * time.Second

// maxExecDirs bounds the directories kept; past it the cache starts over.
const maxExecDirs = 256

// LocalTimesFS are the filesystem types (statfs f_type) whose directory
// times are kept by the kernel itself, so that an unchanged stamp proves
// unchanged entries: a network or FUSE filesystem may report times its
// server did not update, or cached ones. Shared with internal/fanotify's
// caches; not to be changed but by tests.
var LocalTimesFS = map[int64]bool{
	unix.EXT4_SUPER_MAGIC:  true, // ext2, ext3, ext4
	unix.XFS_SUPER_MAGIC:   true,
	unix.BTRFS_SUPER_MAGIC: true,
	unix.TMPFS_MAGIC:       true,
	unix.F2FS_SUPER_MAGIC:  true,
}

// LocalFS remembers, per device, whether its filesystem is in a table
// such as LocalTimesFS: one statfs per device. The zero value is ready.
// Safe for concurrent use.
type LocalFS struct {
	mu   sync.Mutex
	byFS map[uint64]bool // by st_dev
}

// Remember records the answer for device dev, as a statfs would have
// given it (tests of caches over made-up devices).
func (m *LocalFS) Remember(dev uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byFS == nil {
		m.byFS = map[uint64]bool{}
	}
	m.byFS[dev] = ok
}

// Is reports whether dir, on device dev, is on a filesystem in table.
func (m *LocalFS) Is(dir string, dev uint64, table map[int64]bool) bool {
	m.mu.Lock()
	ok, seen := m.byFS[dev]
	m.mu.Unlock()
	if seen {
		return ok
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return false
	}
	ok = table[int64(sfs.Type)]
	m.mu.Lock()
	if m.byFS == nil {
		m.byFS = map[uint64]bool{}
	}
	m.byFS[dev] = ok
	m.mu.Unlock()
	return ok
}

// ExecCache keeps exec-directory listings across resolutions (see above).
// The zero value is not usable: NewExecCache. A nil *ExecCache resolves
// without caching. Safe for concurrent use.
type ExecCache struct {
	mu     sync.Mutex
	dirs   map[string]*execListing
	local  LocalFS
	mounts *mountWatch   // nil: mounts cannot be watched, nothing is kept
	gen    uint64        // bumped when everything is forgotten
	margin time.Duration // RacyMargin; tests lower it
	hits   int           // listings reused, for tests
	// linkHits counts links whose kept resolution was reused, for tests.
	linkHits int
}

// NewExecCache returns an empty cache. When /proc/self/mountinfo cannot
// be opened, the cache keeps nothing (every resolution lists afresh).
func NewExecCache() *ExecCache {
	c := &ExecCache{dirs: map[string]*execListing{}, margin: RacyMargin}
	c.mounts = newMountWatch()
	return c
}

// DirStamp is what a directory's lstat says of its entries: equal stamps
// of a settled directory (Settled) mean the same entries. Shared with
// internal/fanotify's walk and loader caches.
type DirStamp struct {
	Dev, Ino, Nlink uint64
	Size            int64
	Mtime, Ctime    unix.Timespec
}

// StampOf is st's stamp.
func StampOf(st *unix.Stat_t) DirStamp {
	return DirStamp{uint64(st.Dev), st.Ino, uint64(st.Nlink), st.Size, st.Mtim, st.Ctim}
}

// Settled reports whether s, taken at statAt, can prove dir unchanged
// later: both its times older than margin before statAt (a change in the
// same clock tick can leave them equal) and dir on a filesystem in table
// (local remembers which devices are).
func (s DirStamp) Settled(dir string, statAt time.Time, margin time.Duration, local *LocalFS, table map[int64]bool) bool {
	limit := statAt.Add(-margin).UnixNano()
	return unix.TimespecToNsec(s.Mtime) < limit && unix.TimespecToNsec(s.Ctime) < limit && local.Is(dir, s.Dev, table)
}

// execListing is one directory's names: for each, whether it is a symbolic
// link and, when not, the file it is (skip: a directory).
type execListing struct {
	stamp   DirStamp
	entries []execEntry
}

type execEntry struct {
	name string
	link bool
	skip bool      // a directory or a name that could not be stat'ed
	key  [2]uint64 // kernel device, inode; for a link, what res says
	res  *linkRes  // a link's kept resolution (nil: resolve on each use)
}

// linkRes is where a symbolic link led, and the directories whose
// entries decided it.
type linkRes struct {
	deps []dirDep
	skip bool
	key  [2]uint64
}

type dirDep struct {
	dir   string
	stamp DirStamp
}

// stamps memoises directory lstats within one resolution.
type stamps map[string]*DirStamp // nil: not a directory, or gone

func (m stamps) of(dir string) *DirStamp {
	if s, ok := m[dir]; ok {
		return s
	}
	var st unix.Stat_t
	var s *DirStamp
	if unix.Lstat(dir, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		v := StampOf(&st)
		s = &v
	}
	m[dir] = s
	return s
}

// holds reports whether every directory r depends on is unchanged.
func (r *linkRes) holds(m stamps) bool {
	for _, d := range r.deps {
		if s := m.of(d.dir); s == nil || *s != d.stamp {
			return false
		}
	}
	return true
}

// maxLinkHops bounds a chain of links, as the kernel's 40.
const maxLinkHops = 40

// linkDeps follows the chain of links from path, lstat'ing each ancestor
// directory of each path on it: the directories a lookup of the chain
// reads. It returns nil when the chain cannot be followed so (see the
// comment at the top).
func linkDeps(path string, m stamps) []dirDep {
	if !filepath.IsAbs(path) {
		return nil // would depend on the working directory
	}
	seen := map[string]bool{}
	var deps []dirDep
	cur := path
	for range maxLinkHops {
		dir := filepath.Dir(cur)
		for a := dir; ; a = filepath.Dir(a) {
			if !seen[a] {
				s := m.of(a)
				if s == nil {
					return nil
				}
				seen[a] = true
				deps = append(deps, dirDep{a, *s})
			}
			if a == "/" {
				break
			}
		}
		var lst unix.Stat_t
		if unix.Lstat(cur, &lst) != nil {
			return nil
		}
		if lst.Mode&unix.S_IFMT != unix.S_IFLNK {
			return deps
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return nil
		}
		// Leading ".." pop components of dir, a chain of real
		// directories just checked, so cleaning them away is exact;
		// ".." after a name could climb out of a link: not followed.
		rest := target
		for {
			if r, ok := strings.CutPrefix(rest, "../"); ok {
				rest = r
			} else if r, ok := strings.CutPrefix(rest, "./"); ok {
				rest = r
			} else {
				break
			}
		}
		if rest == ".." || strings.HasPrefix(rest, "../") || strings.Contains(rest, "/../") || strings.HasSuffix(rest, "/..") {
			return nil
		}
		if filepath.IsAbs(target) {
			if rest != target {
				return nil
			}
			cur = filepath.Clean(target)
		} else {
			cur = filepath.Join(dir, target)
		}
	}
	return nil
}

// resolveLink stats the link at path, and keeps its resolution when every
// directory it depended on was settled before the stat.
func (c *ExecCache) resolveLink(path string, m stamps) (bool, [2]uint64, *linkRes) {
	statAt := time.Now()
	// The directories first, the target after: a change between the
	// two shows as a stamp that no longer holds at the next use.
	deps := linkDeps(path, m)
	skip, key := statKey(path)
	if deps == nil || c == nil || c.mounts == nil {
		return skip, key, nil
	}
	for _, d := range deps {
		if !d.stamp.Settled(d.dir, statAt, c.margin, &c.local, LocalTimesFS) {
			return skip, key, nil
		}
	}
	return skip, key, &linkRes{deps: deps, skip: skip, key: key}
}

// list returns dir's entries with the file each leads to now: from the
// cache when dir is unchanged since it was kept, listing and stat'ing it
// otherwise. st is dir's stat, taken by the caller.
func (c *ExecCache) list(gen uint64, dir string, st *unix.Stat_t, m stamps) []execEntry {
	if l := c.lookup(dir, st); l != nil {
		c.mu.Lock()
		out := make([]execEntry, len(l.entries))
		copy(out, l.entries)
		c.mu.Unlock()
		prefix := filepath.Join(dir, "x")
		prefix = prefix[:len(prefix)-1]
		for i := range out {
			if !out[i].link {
				continue
			}
			if r := out[i].res; r != nil && r.holds(m) {
				out[i].skip, out[i].key = r.skip, r.key
				c.mu.Lock()
				c.linkHits++
				c.mu.Unlock()
				continue
			}
			var r *linkRes
			out[i].skip, out[i].key, r = c.resolveLink(prefix+out[i].name, m)
			c.mu.Lock()
			l.entries[i].res = r
			c.mu.Unlock()
		}
		return out
	}
	statAt := time.Now()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := make([]execEntry, 0, len(ents))
	complete := true
	for _, ent := range ents {
		e := execEntry{name: ent.Name(), link: ent.Type()&fs.ModeSymlink != 0}
		// A link's dependencies are recorded only when its listing is
		// used again (above): an embedded run resolves once per process,
		// and the walk would cost it a readlink and lstats per link.
		e.skip, e.key = statKey(filepath.Join(dir, e.name))
		if e.skip && !e.link {
			// A directory is a stable answer; a failed stat is not.
			var lst unix.Stat_t
			if unix.Lstat(filepath.Join(dir, e.name), &lst) != nil || lst.Mode&unix.S_IFMT != unix.S_IFDIR {
				complete = false
			}
		}
		out = append(out, e)
	}
	if complete {
		c.store(gen, dir, &execListing{stamp: StampOf(st), entries: out}, statAt)
	}
	return out
}

// statKey stats path (following links): skip for a directory or a failure.
func statKey(path string) (skip bool, key [2]uint64) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return true, key
	}
	return false, [2]uint64{KernelDev(st.Dev), st.Ino}
}

// begin starts a resolution: when a mount changed since the last one,
// every listing is forgotten. It returns the generation the resolution's
// listings are stored under: a resolution that began before a mount
// another one noticed must not store what it listed.
func (c *ExecCache) begin() uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mounts == nil || c.mounts.changed() {
		c.dirs = map[string]*execListing{}
		c.gen++
	}
	return c.gen
}

func (c *ExecCache) lookup(dir string, st *unix.Stat_t) *execListing {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.dirs[dir]
	if l == nil {
		return nil
	}
	if l.stamp != StampOf(st) {
		delete(c.dirs, dir)
		return nil
	}
	c.hits++
	return l
}

// store keeps l for dir when the cache can tell it unchanged later: mounts
// watched, a trusted filesystem, times older than the margin.
func (c *ExecCache) store(gen uint64, dir string, l *execListing, statAt time.Time) {
	if c == nil || c.mounts == nil {
		return
	}
	if !l.stamp.Settled(dir, statAt, c.margin, &c.local, LocalTimesFS) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.dirs) >= maxExecDirs {
		c.dirs = map[string]*execListing{}
	}
	c.dirs[dir] = l
}

// mountWatch tells whether the mount table of this process's mount
// namespace changed since it last asked: the kernel marks an open
// /proc/self/mountinfo POLLPRI|POLLERR on every mount and unmount there
// (fs/proc_namespace.c, mounts_poll), once per change seen.
type mountWatch struct {
	fd int
}

func newMountWatch() *mountWatch {
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	w := &mountWatch{fd: fd}
	runtime.AddCleanup(w, func(fd int) { unix.Close(fd) }, fd)
	return w
}

// changed reports a mount change since the last call (the first call
// reports none: the watch started when it was opened). An error counts as
// a change.
func (w *mountWatch) changed() bool {
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLPRI}}
	n, err := unix.Poll(fds, 0)
	runtime.KeepAlive(w)
	if err != nil {
		return true
	}
	return n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR|unix.POLLNVAL) != 0
}
