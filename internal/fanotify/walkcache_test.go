//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

// noRacyMargin lets a test's directories, just created, be cached at once
// (walkcache.go keeps only listings older than racyMargin).
func noRacyMargin(t *testing.T) {
	old := racyMargin
	racyMargin = 0
	t.Cleanup(func() { racyMargin = old })
}

func (e *env) plan(s *sbox) *plan {
	e.b.mu.RLock()
	defer e.b.mu.RUnlock()
	return e.b.sandboxes[s.ID].plan
}

// The agent's backend reuses what earlier sandboxes' walks listed, and a
// file created between two runs is still protected: in a new directory
// (which only the walk marks: no mark, no event, no check), in a directory
// that was cached, and in one whose mtime was put back afterwards.
func TestWalkCacheNewFilesProtected(t *testing.T) {
	noRacyMargin(t)
	e := newEnv(t, nil)
	for _, d := range []string{"a/b/c", "a/d", "x/y"} {
		if err := os.MkdirAll(filepath.Join(e.home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := e.write(filepath.Join(e.home, "a", "b", "old.pem"), "k")
	e.write(filepath.Join(e.home, "a", "d", "main.go"), "package main")
	p := policy.Policy{DenyRead: rules(".env", "*.pem")}

	first := e.sandbox(p)
	if got := e.run(first, "open", old, "r"); got != "EPERM" {
		t.Fatalf("read of %s in the first sandbox: %s, want EPERM", old, got)
	}
	e.event()
	if pl := e.plan(first); pl.cached != 0 {
		t.Fatalf("first walk took %d directories from the cache, want 0", pl.cached)
	}
	// Gone before the files appear: its marks and its watch on new
	// directories must not be what protects them.
	if err := e.b.Remove(first.ID); err != nil {
		t.Fatal(err)
	}

	// Unchanged: the next walk lists nothing from the disk.
	again := e.sandbox(p)
	if pl := e.plan(again); pl.cached != pl.visited || pl.cached == 0 {
		t.Fatalf("walk of an unchanged home: %d of %d directories from the cache, want all", pl.cached, pl.visited)
	}
	if err := e.b.Remove(again.ID); err != nil {
		t.Fatal(err)
	}

	added := []string{
		e.write(filepath.Join(e.home, "a", "b", "c", "new", "deeper", ".env"), "K=v"), // new directories
		e.write(filepath.Join(e.home, "a", "d", "server.pem"), "k"),                   // a cached directory
	}
	// A new directory whose parent's mtime is put back: only its ctime
	// says it changed.
	y := filepath.Join(e.home, "x", "y")
	st, err := os.Stat(y)
	if err != nil {
		t.Fatal(err)
	}
	added = append(added, e.write(filepath.Join(y, "hidden", ".env"), "K=v"))
	if err := os.Chtimes(y, time.Time{}, st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(y); !st2.ModTime().Equal(st.ModTime()) {
		t.Fatalf("mtime of %s not restored", y)
	}

	last := e.sandbox(p)
	for _, f := range append(added, old) {
		if got := e.run(last, "open", f, "r"); got != "EPERM" {
			t.Errorf("read of %s, created after the cached walk: %s, want EPERM", f, got)
			continue
		}
		e.event()
	}
	if pl := e.plan(last); pl.cached == 0 {
		t.Errorf("no directory from the cache on the last walk: the test proves nothing")
	}
}

// A directory changed within racyMargin of its listing is not cached: its
// times could still equal those of a change made in the same clock tick.
func TestWalkCacheSkipsRecentDirectories(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := policy.Compile(&policy.Policy{DenyRead: []policy.PathRule{{Pattern: ".env"}}}, policy.Env{Home: home, ProjectRoot: home})
	if err != nil {
		t.Fatal(err)
	}
	cache := newWalkCache()
	for i := 0; i < 2; i++ {
		p, err := newPlanCached(c, home, home, nil, 1000, 1000, cache, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.cached != 0 {
			t.Fatalf("walk %d: %d directories from the cache, want 0 (all changed within %v)", i, p.cached, racyMargin)
		}
	}
}

// Every field of a directory's stamp decides alone: a listing is reused
// only for the very lstat it was taken with. (ctime matters where nothing
// else moves: a file added on ext4 keeps the directory's size and link
// count, and utimes can put its mtime back.)
func TestWalkCacheStampFields(t *testing.T) {
	noRacyMargin(t)
	base := unix.Stat_t{Dev: 1, Ino: 2, Nlink: 3, Size: 4096, Mtim: unix.Timespec{Sec: 100, Nsec: 5}, Ctim: unix.Timespec{Sec: 100, Nsec: 6}}
	changes := map[string]func(*unix.Stat_t){
		"dev":   func(s *unix.Stat_t) { s.Dev++ },
		"ino":   func(s *unix.Stat_t) { s.Ino++ },
		"nlink": func(s *unix.Stat_t) { s.Nlink++ },
		"size":  func(s *unix.Stat_t) { s.Size++ },
		"mtime": func(s *unix.Stat_t) { s.Mtim.Nsec++ },
		"ctime": func(s *unix.Stat_t) { s.Ctim.Nsec++ },
	}
	for field, change := range changes {
		c := newWalkCache()
		c.local.Remember(base.Dev, true)
		c.store("/d", &listing{stamp: stampOf(&base)}, time.Now())
		if c.lookup("/d", &base) == nil {
			t.Fatalf("%s: the same stamp missed", field)
		}
		st := base
		change(&st)
		if c.lookup("/d", &st) != nil {
			t.Errorf("a directory whose %s changed was listed from the cache", field)
		}
	}
}

// A file that already has an ignore mask is not stat'ed for one again, and
// a file ignored for one sandbox's policy is still refused to another's
// that protects it, before and after the first sandbox ends.
func TestIgnoredFileProtectedLater(t *testing.T) {
	noRacyMargin(t)
	e := newEnv(t, nil)
	notes := e.write(filepath.Join(e.home, "docs", "notes.txt"), "n")
	first := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	if _, ok := e.b.marks.ignored[mustKey(t, notes)]; !ok {
		t.Fatalf("%s has no ignore mask after the first sandbox", notes)
	}
	again := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	if n := len(e.plan(again).unrelated); n != 0 {
		t.Fatalf("second walk recorded %d unrelated files, want 0 (all have an ignore mask)", n)
	}
	protects := e.sandbox(policy.Policy{DenyRead: rules("notes.txt")})
	if got := e.run(protects, "open", notes, "r"); got != "EPERM" {
		t.Fatalf("read of %s, ignored for other sandboxes: %s, want EPERM", notes, got)
	}
	e.event()
	for _, s := range []*sbox{first, again} {
		if err := e.b.Remove(s.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.run(protects, "open", notes, "r"); got != "EPERM" {
		t.Fatalf("read of %s after the other sandboxes ended: %s, want EPERM", notes, got)
	}
	e.event()
}

func mustKey(t *testing.T, path string) inodeKey {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return keyOf(&st)
}

// A directory on a filesystem whose times are not known to be kept by the
// kernel (network, FUSE, anything not in cachedFS) is listed on every walk.
func TestWalkCacheOnlyTrustedFilesystems(t *testing.T) {
	noRacyMargin(t)
	old := cachedFS
	cachedFS = map[int64]bool{}
	t.Cleanup(func() { cachedFS = old })
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := policy.Compile(&policy.Policy{DenyRead: []policy.PathRule{{Pattern: ".env"}}}, policy.Env{Home: home, ProjectRoot: home})
	if err != nil {
		t.Fatal(err)
	}
	cache := newWalkCache()
	for i := 0; i < 2; i++ {
		p, err := newPlanCached(c, home, home, nil, 1000, 1000, cache, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.cached != 0 {
			t.Fatalf("walk %d: %d directories from the cache on a filesystem not in cachedFS", i, p.cached)
		}
	}
	cachedFS = old
	cache = newWalkCache()
	for i := 0; i < 2; i++ {
		p, _ := newPlanCached(c, home, home, nil, 1000, 1000, cache, nil, nil)
		if i == 1 && p.cached == 0 {
			t.Fatalf("no directory from the cache on %s with the usual cachedFS: the test proves nothing", home)
		}
	}
}

// A file another live sandbox's policy matches by name, which it does not
// protect by inode (created after its walk, no watcher), gets no ignore
// mask from a later sandbox's walk: the later sandbox asks the others'
// policies, only not its own.
func TestNoIgnoreMaskOnOthersMatch(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.noWatch = true })
	first := e.sandbox(policy.Policy{DenyRead: rules("late.txt")})
	late := e.write(filepath.Join(e.project, "late.txt"), "k")
	e.sandbox(policy.Policy{DenyRead: rules(".env")})
	if _, ok := e.b.marks.ignored[mustKey(t, late)]; ok {
		t.Fatalf("%s got an ignore mask while %s's policy denies it", late, first.Name)
	}
	if got := e.run(first, "open", late, "r"); got != "EPERM" {
		t.Fatalf("read of %s in %s: %s, want EPERM", late, first.Name, got)
	}
	e.event()
}
