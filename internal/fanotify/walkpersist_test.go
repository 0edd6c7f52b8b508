//go:build linux

package fanotify

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

// persistEnv is an env whose backend keeps its walk cache in a directory
// of the test's, like an embedded run's.
func persistEnv(t *testing.T) (*env, string) {
	noRacyMargin(t)
	dir := filepath.Join(t.TempDir(), "walk")
	e := newEnv(t, func(o *Options) { o.WalkCacheDir = dir })
	return e, dir
}

// reopen ends e's backend as an embedded run's process ends (Close, which
// saves the cache) and opens a new one, as the next run does.
func (e *env) reopen(t *testing.T) {
	t.Helper()
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := Open(e.b.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
	})
	e.b = b
}

// cacheFile is the file of the home's owner.
func (e *env) cacheFile(t *testing.T, dir string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(e.home, &st); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, strconv.FormatUint(uint64(st.Uid), 10))
}

func walkHome(t *testing.T, e *env) {
	t.Helper()
	for _, d := range []string{"a/b/c", "a/d", "x/y"} {
		if err := os.MkdirAll(filepath.Join(e.home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.write(filepath.Join(e.home, "a", "d", "main.go"), "package main")
}

// A second embedded run lists the unchanged home from the file the first
// one left, root's, mode 0600 in a 0700 directory; a protected file
// created in between, in a directory the file lists, is still refused:
// that directory is read from the disk again.
func TestWalkCachePersisted(t *testing.T) {
	e, dir := persistEnv(t)
	walkHome(t, e)
	p := policy.Policy{DenyRead: rules(".env", "*.pem")}

	first := e.sandbox(p)
	if pl := e.plan(first); pl.cached != 0 {
		t.Fatalf("first walk took %d directories from the cache, want 0", pl.cached)
	}
	e.reopen(t)
	file := e.cacheFile(t, dir)
	for path, want := range map[string]uint32{dir: unix.S_IFDIR | 0o700, file: unix.S_IFREG | 0o600} {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			t.Fatalf("the first run left no walk cache: %v", err)
		}
		if st.Mode != want || st.Uid != 0 {
			t.Errorf("%s: mode %o uid %d, want %o uid 0", path, st.Mode, st.Uid, want)
		}
	}

	again := e.sandbox(p)
	if pl := e.plan(again); pl.cached != pl.visited || pl.cached == 0 {
		t.Fatalf("second run: %d of %d directories from the walk cache file, want all", pl.cached, pl.visited)
	}
	e.reopen(t)

	secret := e.write(filepath.Join(e.home, "a", "d", "server.pem"), "k")
	last := e.sandbox(p)
	if got := e.run(last, "open", secret, "r"); got != "EPERM" {
		t.Fatalf("read of %s, created after the cache was saved: %s, want EPERM", secret, got)
	}
	e.event()
	pl := e.plan(last)
	if pl.cached != pl.visited-1 {
		t.Errorf("third run: %d of %d directories from the cache, want all but the changed one", pl.cached, pl.visited)
	}
}

// A cache file that is not exactly what a root run wrote is not used: its
// walk lists every directory from the disk, and the run replaces it.
func TestWalkCacheFileRefused(t *testing.T) {
	cases := map[string]func(t *testing.T, file string){
		"corrupt": func(t *testing.T, file string) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0xff
			if err := os.WriteFile(file, data, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"edited": func(t *testing.T, file string) {
			// Still well-formed: only the checksum tells.
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			edited := bytes.Replace(data, []byte("main.go"), []byte("main.gx"), 1)
			if bytes.Equal(edited, data) {
				t.Fatal("main.go not in the walk cache")
			}
			if err := os.WriteFile(file, edited, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, file string) {
			if err := os.Truncate(file, 100); err != nil {
				t.Fatal(err)
			}
		},
		"foreign owner": func(t *testing.T, file string) {
			if err := os.Chown(file, 1000, 1000); err != nil {
				t.Fatal(err)
			}
		},
		"readable by others": func(t *testing.T, file string) {
			if err := os.Chmod(file, 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"symlink": func(t *testing.T, file string) {
			moved := file + ".real"
			if err := os.Rename(file, moved); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(moved, file); err != nil {
				t.Fatal(err)
			}
		},
		"hard link": func(t *testing.T, file string) {
			if err := os.Link(file, file+".link"); err != nil {
				t.Fatal(err)
			}
		},
		"another binary": func(t *testing.T, file string) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			dirs, err := decodeWalks(data, walkIdentity(), 0)
			if err != nil {
				t.Fatal(err)
			}
			paths := make([]string, 0, len(dirs))
			for p := range dirs {
				paths = append(paths, p)
			}
			if err := os.WriteFile(file, encodeWalks(walkIdentity()+"x", 0, paths, dirs), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"directory writable by others": func(t *testing.T, file string) {
			if err := os.Chmod(filepath.Dir(file), 0o777); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			e, dir := persistEnv(t)
			walkHome(t, e)
			p := policy.Policy{DenyRead: rules(".env")}
			e.sandbox(p)
			e.reopen(t)
			file := e.cacheFile(t, dir)
			spoil(t, file)

			s := e.sandbox(p)
			if pl := e.plan(s); pl.cached != 0 {
				t.Fatalf("%d directories from a walk cache that is %s, want 0", pl.cached, name)
			}
			if name == "directory writable by others" {
				return // left alone: not root's to trust
			}
			e.reopen(t)
			var st unix.Stat_t
			if err := unix.Lstat(file, &st); err != nil || st.Mode != unix.S_IFREG|0o600 || st.Uid != 0 || st.Nlink != 1 {
				t.Fatalf("walk cache %s not replaced by a root file: mode %o uid %d links %d (%v)", name, st.Mode, st.Uid, st.Nlink, err)
			}
			if s := e.sandbox(p); e.plan(s).cached == 0 {
				t.Errorf("the replaced walk cache was not used")
			}
		})
	}
}

// What decodeWalks accepts: only well-formed names, matched files that
// are listed once each with a rule, clean absolute paths.
func TestDecodeWalksRefusesBadNames(t *testing.T) {
	id := "boot bin"
	good := &listing{files: []string{"b", "a.pem"}, subdirs: []string{"d"}, fp: [32]byte{1}, matched: map[string]bool{"a.pem": true},
		rulesFP: [32]byte{1}, rules: map[string]fileRules{"a.pem": {read: 3, exec: 3}}}
	dirs, err := decodeWalks(encodeWalks(id, 7, []string{"/h"}, map[string]*listing{"/h": good}), id, 7)
	if err != nil {
		t.Fatalf("a well-formed file refused: %v", err)
	}
	if l := dirs["/h"]; l == nil || !l.matched["a.pem"] || len(l.matched) != 1 || l.rulesFP != good.fp || l.rules["a.pem"] != good.rules["a.pem"] {
		t.Fatalf("decoded %+v, want a.pem matched with its rules", dirs["/h"])
	}
	bad := map[string]struct {
		path    string
		l       *listing
		matched [][4]uint64 // written as the matched files (index, read, write, exec) when set
	}{
		"dotdot subdir":      {"/h", &listing{subdirs: []string{".."}}, nil},
		"slash in name":      {"/h", &listing{files: []string{"a/b"}}, nil},
		"empty name":         {"/h", &listing{links: []string{""}}, nil},
		"relative path":      {"h", &listing{}, nil},
		"unclean path":       {"/h/../etc", &listing{}, nil},
		"matched unlisted":   {"/h", &listing{files: []string{"b"}}, [][4]uint64{{1, 3, 0, 0}}},
		"matched twice":      {"/h", &listing{files: []string{"a", "b"}}, [][4]uint64{{1, 3, 0, 0}, {1, 3, 0, 0}}},
		"matched no rule":    {"/h", &listing{files: []string{"b"}}, [][4]uint64{{0, 0, 0, 0}}},
		"rule past 32 bits":  {"/h", &listing{files: []string{"b"}}, [][4]uint64{{0, 1 << 32, 0, 0}}},
		"more matched files": {"/h", &listing{files: []string{"b"}}, [][4]uint64{{0, 3, 0, 0}, {0, 3, 0, 0}}},
	}
	for name, c := range bad {
		data := encodeWalks(id, 7, []string{c.path}, map[string]*listing{c.path: c.l})
		if c.matched != nil {
			data = withMatched(t, data, c.matched)
		}
		if _, err := decodeWalks(data, id, 7); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodeWalks(encodeWalks(id, 7, []string{"/h"}, map[string]*listing{"/h": good}), id, 8); err == nil {
		t.Errorf("another user's file accepted")
	}
}

// withMatched rewrites data, the file of one listing written without
// matched files, so that its listing has matched (the section
// encodeWalks only writes from a consistent listing), and checksums it
// again.
func withMatched(t *testing.T, data []byte, matched [][4]uint64) []byte {
	t.Helper()
	body := data[:len(data)-sha256.Size]
	if body[len(body)-1] != 0 {
		t.Fatal("the listing already has matched files")
	}
	var b bytes.Buffer
	b.Write(body[:len(body)-1])
	b.WriteByte(1)
	b.Write(make([]byte, 31))
	b.WriteByte(1) // a fingerprint that is not zero
	putUvarint(&b, uint64(len(matched)))
	for _, m := range matched {
		for _, v := range m {
			putUvarint(&b, v)
		}
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// A persisted listing keeps its matched files' rules for the policy it was
// written under (its fingerprint); a run under another policy matches
// them again. Here key.pem is deny_write in the first run and deny_read
// in the second: a hard link to it outside the walked trees reaches the
// file by inode alone, so it is refused for reading only if the second
// run's rules, not the stored ones, protect the inode.
func TestWalkCacheRulesFollowPolicy(t *testing.T) {
	e, _ := persistEnv(t)
	walkHome(t, e)
	key := e.write(filepath.Join(e.home, "a", "d", "key.pem"), "k")
	elsewhere := filepath.Join(t.TempDir(), "link")
	if err := os.Link(key, elsewhere); err != nil {
		t.Fatal(err)
	}
	e.sandbox(policy.Policy{DenyWrite: rules("*.pem")})
	e.reopen(t)

	s := e.sandbox(policy.Policy{DenyRead: rules("*.pem")})
	if pl := e.plan(s); pl.cached != pl.visited || pl.cached == 0 {
		t.Fatalf("%d of %d directories from the walk cache file, want all: the test proves nothing", pl.cached, pl.visited)
	}
	if got := e.run(s, "open", elsewhere, "r"); got != "EPERM" {
		t.Fatalf("read through hard link %s under the second policy: %s, want EPERM", elsewhere, got)
	}
	e.event()
}
