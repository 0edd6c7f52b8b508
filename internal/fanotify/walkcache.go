//go:build linux

package fanotify

import (
	"crypto/sha256"
	"encoding/json"
	"io/fs"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/resolve"
)

// Name rules (".env", "*.pem") can match anywhere in the home, so each
// sandbox walks it: a 16,000-directory home took seconds per `aigate run`,
// most of it reading directories and matching every file name against the
// policy. The agent's backend lives across runs and remembers, per
// directory, what it listed and which of its files the policy matched; a
// later walk reuses that only for a directory that provably did not change.
//
// What proves it: the directory's lstat (device, inode, size, link count,
// mtime and ctime, to the nanosecond) is the one taken when it was listed.
// Every change to a directory's entries (create, unlink, rename in or out,
// link, mkdir, rmdir) sets its mtime and ctime; utimes can put the mtime
// back but sets the ctime, which only the clock can. A directory replaced
// or mounted over has another device or inode. What a name leads to
// changes only through those same operations, except for symbolic links,
// which are resolved again on every walk, and for a file's size and
// contents, which the listing does not keep: every file is stat'ed again
// when it is protected or recorded for an ignore mask.
//
// That holds for local filesystems that keep POSIX times; a network or
// FUSE filesystem may report times its server did not update, or cached
// ones, so only the filesystems in cachedFS are cached.
//
// Timestamps advance in clock ticks, so a change in the tick the lstat
// was taken in can leave them equal (git's "racily clean" index entries).
// A listing is kept only when the directory's mtime and ctime are older
// than racyMargin before the lstat; a directory changed since then has
// times later than the lstat, which differ.

// racyMargin and cachedFS are internal/resolve's, shared with its
// exec-directory cache (tests change them here).
var (
	racyMargin = resolve.RacyMargin
	cachedFS   = resolve.LocalTimesFS
)

// maxCachedDirs bounds the listings kept; past it the cache starts over.
const maxCachedDirs = 200000

// dirStamp is internal/resolve's, shared with its exec-directory cache.
type dirStamp = resolve.DirStamp

var stampOf = resolve.StampOf

// listing is one directory's entries by type, names only.
type listing struct {
	stamp                 dirStamp
	subdirs, files, links []string

	mu sync.Mutex
	// matched are the files some rule of the policy with fingerprint fp
	// matches by path (matchPath(...).any()).
	fp      [32]byte
	matched map[string]bool
	// rules are the matched files' rules for the policy with
	// fingerprint rulesFP (not kept on disk: made again from matched).
	rulesFP [32]byte
	rules   map[string]fileRules
}

// walkCache holds the listings of one backend's walks.
type walkCache struct {
	mu    sync.Mutex
	dirs  map[string]*listing
	local resolve.LocalFS    // whose filesystems are in cachedFS
	gen   uint64             // stores so far: walkStore saves a cache that learnt something
	exec  *resolve.ExecCache // the exec directories' listings (deny_exec names)
}

func newWalkCache() *walkCache {
	return &walkCache{dirs: map[string]*listing{}, exec: resolve.NewExecCache()}
}

// execCache is the exec directories' cache; nil (none) for a nil c.
func (c *walkCache) execCache() *resolve.ExecCache {
	if c == nil {
		return nil
	}
	return c.exec
}

// lookup returns dir's listing when the cache has one for exactly the
// directory st describes.
func (c *walkCache) lookup(dir string, st *unix.Stat_t) *listing {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.dirs[dir]
	if l == nil {
		return nil
	}
	if l.stamp != stampOf(st) {
		delete(c.dirs, dir)
		return nil
	}
	return l
}

// store keeps l for dir when its stamp is old enough to be trusted (see
// racyMargin); statAt is when the lstat that gave the stamp was taken.
func (c *walkCache) store(dir string, l *listing, statAt time.Time) {
	if c == nil {
		return
	}
	if !l.stamp.Settled(dir, statAt, racyMargin, &c.local, cachedFS) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.dirs) >= maxCachedDirs {
		c.dirs = map[string]*listing{}
	}
	c.dirs[dir] = l
	c.gen++
}

// readListing lists dir; stamp is the lstat taken before.
func readListing(dir string, stamp dirStamp) (*listing, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, false
	}
	l := &listing{stamp: stamp}
	for _, e := range entries {
		switch t := e.Type(); {
		case t.IsDir():
			l.subdirs = append(l.subdirs, e.Name())
		case t.IsRegular():
			l.files = append(l.files, e.Name())
		case t&fs.ModeSymlink != 0:
			l.links = append(l.links, e.Name())
		}
	}
	return l, true
}

// matchedFiles returns which of l's files a rule of c (fingerprint fp)
// matches, prefix being the directory with its trailing slash.
func (l *listing) matchedFiles(c *policy.Compiled, fp [32]byte, prefix string) map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fp != ([32]byte{}) && l.matched != nil && l.fp == fp {
		return l.matched
	}
	m := map[string]bool{}
	rules := map[string]fileRules{}
	for _, name := range l.files {
		if r := matchPath(c, prefix+name); r.any() {
			m[name] = true
			rules[name] = r
		}
	}
	if fp != ([32]byte{}) {
		l.fp, l.matched = fp, m
		l.rulesFP, l.rules = fp, rules
	}
	return m
}

// matchedRules is matchedFiles with each matched file's rules, so that a
// walk that meets the files again need not match them again (a user's
// build cache: 100,000 files).
func (l *listing) matchedRules(c *policy.Compiled, fp [32]byte, prefix string) map[string]fileRules {
	matched := l.matchedFiles(c, fp, prefix)
	l.mu.Lock()
	defer l.mu.Unlock()
	if fp != ([32]byte{}) && l.rules != nil && l.rulesFP == fp {
		return l.rules
	}
	rules := make(map[string]fileRules, len(matched))
	for name := range matched {
		rules[name] = matchPath(c, prefix+name)
	}
	if fp != ([32]byte{}) {
		l.rulesFP, l.rules = fp, rules
	}
	return rules
}

// fingerprint identifies what matchPath reads of c: two policies with the
// same fingerprint match every path alike.
func fingerprint(c *policy.Compiled) [32]byte {
	b, err := json.Marshal([]policy.FileSet{c.Read, c.Write, c.Exec})
	if err != nil {
		// Unreachable for plain data; an empty fingerprint is never
		// stored, so nothing would be reused.
		return [32]byte{}
	}
	return sha256.Sum256(b)
}
