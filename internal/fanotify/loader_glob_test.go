//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// globLoaders is a loaders whose globs look in a directory of the test:
// lib/*-linux-*/ld-*.so* and lib64/ld-*.so*.
func globLoaders(t *testing.T) (*loaders, string) {
	noRacyMargin(t)
	root := t.TempDir()
	for _, d := range []string{"lib/x86_64-linux-gnu", "lib64"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l := newLoaders()
	l.globs = []string{filepath.Join(root, "lib/*-linux-*/ld-*.so*"), filepath.Join(root, "lib64/ld-*.so*")}
	return l, root
}

func writeLoader(t *testing.T, path, body string) inodeKey {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return keyOf(&st)
}

// tick waits past the timestamp granularity, so that the next change to a
// directory gives it other times than those already seen.
func tick() { time.Sleep(20 * time.Millisecond) }

// TestLoaderGlobNewLoader: a loader installed after the globs' result was
// kept, in a directory they list or in a new directory a wildcard
// matches, is learnt by the next refresh; until something changes, the
// directories are not globbed again.
func TestLoaderGlobNewLoader(t *testing.T) {
	l, root := globLoaders(t)
	a := writeLoader(t, filepath.Join(root, "lib/x86_64-linux-gnu/ld-a.so.2"), "a")
	tick()
	l.refresh(nil)
	if !l.keys[a] {
		t.Fatal("ld-a.so.2 not learnt")
	}
	kept := l.found
	if !kept.ok {
		t.Fatal("the globs' result was not kept: the test proves nothing about reusing it")
	}
	l.refresh(nil)
	if len(l.found.paths) != len(kept.paths) || &l.found.paths[0] != &kept.paths[0] {
		t.Fatal("an unchanged tree was globbed again")
	}

	tick()
	b := writeLoader(t, filepath.Join(root, "lib64/ld-b.so.1"), "b")
	l.refresh(nil)
	if !l.keys[b] {
		t.Fatal("ld-b.so.1, created after the result was kept, not learnt")
	}

	tick()
	if err := os.Mkdir(filepath.Join(root, "lib/aarch64-linux-gnu"), 0o755); err != nil {
		t.Fatal(err)
	}
	tick()
	l.refresh(nil)
	tick()
	c := writeLoader(t, filepath.Join(root, "lib/aarch64-linux-gnu/ld-c.so.1"), "c")
	l.refresh(nil)
	if !l.keys[c] {
		t.Fatal("ld-c.so.1, in a directory created after the result was kept, not learnt")
	}
}

// TestLoaderGlobLinkSwitched: a loader name that stays but is a symbolic
// link switched to another file (in a directory the globs never list) is
// learnt as that file.
func TestLoaderGlobLinkSwitched(t *testing.T) {
	l, root := globLoaders(t)
	store := t.TempDir()
	old := writeLoader(t, filepath.Join(store, "old"), "old")
	link := filepath.Join(root, "lib64/ld-linux-x86-64.so.2")
	if err := os.Symlink(filepath.Join(store, "cur"), link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("old", filepath.Join(store, "cur")); err != nil {
		t.Fatal(err)
	}
	tick()
	l.refresh(nil)
	if !l.keys[old] || !l.found.ok {
		t.Fatalf("old loader learnt %v, result kept %v", l.keys[old], l.found.ok)
	}
	next := writeLoader(t, filepath.Join(store, "new"), "new")
	if err := os.Remove(filepath.Join(store, "cur")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("new", filepath.Join(store, "cur")); err != nil {
		t.Fatal(err)
	}
	l.refresh(nil)
	if !l.keys[next] {
		t.Fatal("the loader the link leads to now was not learnt")
	}
}
