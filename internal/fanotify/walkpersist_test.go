//go:build linux

package fanotify

import (
	"bytes"
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
// are listed, clean absolute paths.
func TestDecodeWalksRefusesBadNames(t *testing.T) {
	id := "boot bin"
	good := &listing{files: []string{"a.pem", "b"}, subdirs: []string{"d"}, fp: [32]byte{1}, matched: map[string]bool{"a.pem": true}}
	if _, err := decodeWalks(encodeWalks(id, 7, []string{"/h"}, map[string]*listing{"/h": good}), id, 7); err != nil {
		t.Fatalf("a well-formed file refused: %v", err)
	}
	bad := map[string]struct {
		path string
		l    *listing
	}{
		"dotdot subdir":    {"/h", &listing{subdirs: []string{".."}}},
		"slash in name":    {"/h", &listing{files: []string{"a/b"}}},
		"empty name":       {"/h", &listing{links: []string{""}}},
		"relative path":    {"h", &listing{}},
		"unclean path":     {"/h/../etc", &listing{}},
		"matched unlisted": {"/h", &listing{files: []string{"b"}, fp: [32]byte{1}, matched: map[string]bool{"a.pem": true}}},
	}
	for name, c := range bad {
		data := encodeWalks(id, 7, []string{c.path}, map[string]*listing{c.path: c.l})
		if _, err := decodeWalks(data, id, 7); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodeWalks(encodeWalks(id, 7, []string{"/h"}, map[string]*listing{"/h": good}), id, 8); err == nil {
		t.Errorf("another user's file accepted")
	}
}
