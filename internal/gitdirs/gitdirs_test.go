package gitdirs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// tree makes files (content after "=") and directories (ending in "/")
// below dir.
func tree(t testing.TB, dir string, entries ...string) {
	t.Helper()
	for _, e := range entries {
		name, content, _ := strings.Cut(e, "=")
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func patterns(r Result) []string {
	var out []string
	for _, e := range r.Entries {
		out = append(out, e.Pattern)
	}
	sort.Strings(out)
	return out
}

func TestScan(t *testing.T) {
	home := t.TempDir()
	tree(t, home,
		".gitconfig=[core]\n\thooksPath = ~/githooks # mine\n",
		"p/.git/HEAD=ref: refs/heads/main\n",
		"p/.git/config=[core]\n\tbare = false\n\thooksPath = \".husky/_\"\n",
		// a submodule whose name has a "/", with a submodule of its own
		"p/.git/modules/lib/a/HEAD=x\n",
		"p/.git/modules/lib/a/config=[core]\n\tworktree = ../../../../lib/a\n\tHooksPath = hooks2\n",
		"p/.git/modules/lib/a/modules/inner/HEAD=x\n",
		"p/lib/a/.git=gitdir: ../../.git/modules/lib/a\n",
		"p/.git/worktrees/w/HEAD=x\n",
		"p/.git/worktrees/w/commondir=../..\n",
		"p/vendor/x/.git/HEAD=x\n",
		"p/vendor/x/.git/modules/y/HEAD=x\n",
		"p/node_modules/pkg/.git/HEAD=x\n",
		"p/src/deep/er/file.go=package x\n",
	)
	r := Scan(Options{ProjectRoot: filepath.Join(home, "p"), Home: home})
	want := []string{}
	for _, g := range []string{"p/.git", "p/.git/modules/lib/a", "p/.git/modules/lib/a/modules/inner", "p/.git/worktrees/w", "p/vendor/x/.git", "p/vendor/x/.git/modules/y"} {
		for _, f := range perGitDir {
			want = append(want, "~/"+g+"/"+f)
		}
	}
	want = append(want, "~/p/lib/a/.git", "~/githooks/")
	sort.Strings(want)
	if got := patterns(r); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range r.Entries {
		if e.Pattern == "~/p/.git/modules/lib/a/config" && e.By != "~/p/.git/modules/lib/a (submodule lib/a)" {
			t.Errorf("by: %q", e.By)
		}
	}
	// Hooks directories in the project are its source: named, not kept.
	if notes := strings.Join(r.Notes, "\n"); len(r.Notes) != 2 || !strings.Contains(notes, "~/p/.husky/_ is in the project") ||
		!strings.Contains(notes, "~/p/lib/a/hooks2 is in the project") {
		t.Errorf("notes: %q", r.Notes)
	}
}

// TestScanAbove: run in a directory below the repository's top, the
// repository's git directory is found upwards; one outside the home is
// named by its absolute path.
func TestScanAbove(t *testing.T) {
	top := t.TempDir()
	tree(t, top, ".git/HEAD=x\n", ".git/modules/s/HEAD=x\n", "sub/dir/f=x\n")
	r := Scan(Options{ProjectRoot: filepath.Join(top, "sub", "dir"), Home: filepath.Join(top, "nohome")})
	got := strings.Join(patterns(r), "\n")
	for _, w := range []string{filepath.Join(top, ".git", "commondir"), filepath.Join(top, ".git", "modules", "s", "config")} {
		if !strings.Contains(got, w) {
			t.Errorf("%s missing from:\n%s", w, got)
		}
	}
}

// TestScanHome: run in the home, the walk leaves the home's
// dot-directories (tool state) alone and still finds a project below it.
func TestScanHome(t *testing.T) {
	home := t.TempDir()
	tree(t, home, ".pyenv/versions/3/.git/HEAD=x\n", ".cache/a/b/", "src/x/.git/HEAD=x\n", "src/.hidden/y/.git/HEAD=x\n")
	r := Scan(Options{ProjectRoot: home, Home: home})
	got := strings.Join(patterns(r), " ")
	if strings.Contains(got, ".pyenv") || r.Dirs != 5 { // home, .cache skipped, src, src/x, src/.hidden, src/.hidden/y
		t.Errorf("walked %d directories: %s", r.Dirs, got)
	}
	for _, w := range []string{"~/src/x/.git/config", "~/src/.hidden/y/.git/config"} {
		if !strings.Contains(got, w) {
			t.Errorf("%s missing from %s", w, got)
		}
	}
}

// TestScanBounded: the walk stops after MaxDirs directories and says so.
func TestScanBounded(t *testing.T) {
	root := t.TempDir()
	for i := range 20 {
		tree(t, root, fmt.Sprintf("d%02d/", i))
	}
	tree(t, root, "zz/.git/HEAD=x\n")
	r := Scan(Options{ProjectRoot: root, MaxDirs: 5})
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "more than 5 directories") {
		t.Errorf("notes: %q", r.Notes)
	}
	if r.Dirs > 6 {
		t.Errorf("walked %d directories", r.Dirs)
	}
}

// bigTree is a project of 200 packages of 20 directories of 5 files.
func bigTree(b *testing.B) string {
	root := b.TempDir()
	var ents []string
	for i := range 200 {
		for j := range 20 {
			for k := range 5 {
				ents = append(ents, fmt.Sprintf("pkg%d/dir%d/f%d.go=x", i, j, k))
			}
		}
	}
	tree(b, root, append(ents, ".git/HEAD=x\n", ".git/modules/s/HEAD=x\n")...)
	return root
}

// BenchmarkScan and BenchmarkScanBaseline side by side: Scan of a
// 4,200-directory project against a bare WalkDir of it.
func BenchmarkScan(b *testing.B) {
	root := bigTree(b)
	b.ResetTimer()
	for range b.N {
		Scan(Options{ProjectRoot: root})
	}
}

func BenchmarkScanBaseline(b *testing.B) {
	root := bigTree(b)
	b.ResetTimer()
	for range b.N {
		_ = filepath.WalkDir(root, func(string, os.DirEntry, error) error { return nil })
	}
}

// TestRisky: what git writes into a new submodule's git directory is not
// reported; a planted fsmonitor, alias, submodule update command,
// commondir and hook are.
func TestRisky(t *testing.T) {
	g := t.TempDir()
	tree(t, g, "config=[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n\tworktree = ../../../new\n"+
		"[remote \"origin\"]\n\turl = /tmp/x\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n",
		"hooks/pre-commit.sample=#!/bin/sh\n")
	if r := Risky(g); len(r) != 0 {
		t.Errorf("git's own settings reported: %q", r)
	}
	tree(t, g, "config.worktree=[Core]\n\tFSMonitor = \"touch x\"\n[alias]\n\tst = !sh\n[submodule.x]\n\tupdate = !sh\n",
		"commondir=/tmp/evil\n", "hooks/post-checkout=#!/bin/sh\n")
	want := "alias.st commondir core.fsmonitor hooks/post-checkout submodule.x.update"
	if got := strings.Join(Risky(g), " "); got != want {
		t.Errorf("Risky = %q, want %q", got, want)
	}
}

// TestScanLinkedWorktree: a project that is a linked worktree (as Claude
// Code makes them) has a .git file; its hooks and config are the main
// repository's, outside the project, which the defaults (anchored at the
// project root) do not reach.
func TestScanLinkedWorktree(t *testing.T) {
	home := t.TempDir()
	tree(t, home, "main/.git/HEAD=x\n", "main/.git/worktrees/w/HEAD=x\n", "main/.git/worktrees/w/commondir=../..\n",
		"w/.git=gitdir: "+filepath.Join(home, "main/.git/worktrees/w")+"\n")
	got := strings.Join(patterns(Scan(Options{ProjectRoot: filepath.Join(home, "w"), Home: home})), " ")
	for _, w := range []string{"~/w/.git", "~/main/.git/hooks/", "~/main/.git/config", "~/main/.git/worktrees/w/config.worktree"} {
		if !strings.Contains(" "+got+" ", " "+w+" ") {
			t.Errorf("%s missing from %s", w, got)
		}
	}
}
