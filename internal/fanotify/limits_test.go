//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestKnownGaps measures what this backend does NOT enforce, so that
// docs/backends.md states facts. If one of these starts being denied, the
// gap is closed: update the table and turn the assertion around.
func TestKnownGaps(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxWalkDirs = 3 })
	// The walk covers the project first (proj, a, b: three directories),
	// so the home directory itself is beyond the bound.
	for _, d := range []string{"a", "b"} {
		e.write(filepath.Join(e.project, d, "keep"), "x")
	}
	s := e.sandbox(policy.Policy{DenyRead: rules(".env", "*.key")})

	// 1. A matching file in a directory created after Add once the sandbox
	// has reached its directory bound. (Below the bound new directories are
	// marked: TestNewDirCreatedOutside, TestNewDirMovedIn; what is left is
	// the race measured by TestNewDirRace.)
	newDir := filepath.Join(e.project, "created-later")
	late := e.write(filepath.Join(newDir, ".env"), "K=v")
	if e.b.Health().Watching {
		waitFor(t, "new directory counted as unmarked", func() bool { return e.b.Health().UnmarkedDirs == 1 })
	}
	// 2. A matching file in a directory beyond the walk bound.
	var beyond string
	e.b.marks.mu.Lock() // the watcher marks new files meanwhile
	_, marked := e.b.marks.applied[e.home]
	e.b.marks.mu.Unlock()
	if !marked {
		beyond = e.write(filepath.Join(e.home, "x.key"), "k")
	}
	for _, c := range []struct{ what, path string }{
		{"file in a directory created after Add, beyond the bound", late},
		{"file below the walk bound", beyond},
	} {
		if c.path == "" {
			t.Fatalf("%s: setup failed", c.what)
		}
		got := e.run(s, "open", c.path, "r")
		t.Logf("gap: %s (%s): %s", c.what, c.path, got)
		if got != "ok" {
			t.Errorf("%s is now denied (%s): update docs/backends.md", c.what, got)
		}
	}
	// For contrast: a new matching file directly in a marked directory.
	caught := e.write(filepath.Join(e.project, "later.key"), "k")
	if got := e.run(s, "open", caught, "r"); got != "EPERM" {
		t.Fatalf("new file in a marked directory: %s, want EPERM", got)
	}
}

// TestIgnoredFileRenamedToDenied: an unrelated file, which got an ignore
// mask at start, renamed to a denied name: once the watcher has seen the
// rename (protectNew) its ignore mask is gone and opens inside are
// refused. The mask used to be removed through the path it was set
// through, which the rename had emptied (ENOENT), so it stayed and
// silenced the file for good.
func TestIgnoredFileRenamedToDenied(t *testing.T) {
	e := newEnv(t, nil)
	if e.b.watch == nil {
		testutil.SkipUnlessKernel(t, "no directory watcher")
	}
	notes := e.write(filepath.Join(e.project, "notes.txt"), "x")
	s := e.sandbox(policy.Policy{DenyRead: rules(".env", "*.key")})
	var st unix.Stat_t
	if err := unix.Stat(notes, &st); err != nil {
		t.Fatal(err)
	}
	key := keyOf(&st)
	e.b.marks.mu.Lock()
	_, ignored := e.b.marks.ignored[key]
	e.b.marks.mu.Unlock()
	if !ignored {
		t.Fatalf("%s has no ignore mask: the test needs one", notes)
	}
	target := filepath.Join(e.project, "real.key")
	if err := os.Rename(notes, target); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renamed file protected by inode", func() bool {
		e.b.marks.mu.Lock()
		defer e.b.marks.mu.Unlock()
		return e.b.marks.protect[key] > 0
	})
	if got := e.run(s, "open", target, "r"); got != "EPERM" {
		t.Fatalf("open inside of %s, renamed from an ignored file: %s, want EPERM", target, got)
	}
}
