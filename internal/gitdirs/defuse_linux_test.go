package gitdirs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDefuse: a planted fsmonitor goes from the config, the rest of it
// and the original stay; a hook and a foreign commondir are moved aside,
// samples and a linked worktree's own commondir stay; each action says
// how to undo it.
func TestDefuse(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "main")
	tree(t, dir, "main/HEAD=x\n", "main/objects/",
		"new/config=[core]\n\tbare = false\n\tfsmonitor = touch ran\n# kept\n",
		"new/hooks/pre-commit.sample=#!/bin/sh\n", "new/hooks/post-checkout=#!/bin/sh\n",
		"new/commondir=/tmp/elsewhere\n",
		"wt/commondir=../main\n")
	now := time.Unix(1765000000, 0)
	o := DefuseOptions{UID: os.Getuid(), Known: map[string]bool{main: true}, Now: now}
	acts, err := Defuse(filepath.Join(dir, "new"), o)
	if err != nil {
		t.Fatal(err)
	}
	g := filepath.Join(dir, "new")
	if got, want := read(t, filepath.Join(g, "config")), "[core]\n\tbare = false\n# kept\n"; got != want {
		t.Errorf("config = %q, want %q", got, want)
	}
	if got := read(t, filepath.Join(g, "config.aigate-1765000000")); !strings.Contains(got, "fsmonitor") {
		t.Errorf("original config not kept aside: %q", got)
	}
	for _, p := range []string{"hooks/pre-commit.sample", "hooks.aigate-1765000000/post-checkout", "commondir.aigate-1765000000"} {
		if _, err := os.Lstat(filepath.Join(g, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{"hooks/post-checkout", "commondir"} {
		if _, err := os.Lstat(filepath.Join(g, p)); err == nil {
			t.Errorf("%s still there", p)
		}
	}
	if len(acts) != 3 || Risky(g) != nil {
		t.Errorf("actions %+v, risky after: %q", acts, Risky(g))
	}
	for _, a := range acts {
		if !strings.HasPrefix(a.Restore(), "mv "+a.Aside+" "+a.Path) {
			t.Errorf("restore %q", a.Restore())
		}
	}
	if acts, err := Defuse(filepath.Join(dir, "wt"), o); err != nil || len(acts) != 0 {
		t.Errorf("a linked worktree's commondir to a known git directory: %+v, %v", acts, err)
	}
}

// TestDefuseNoFollow: a config that is a link to a file outside (a
// sandbox's `ln -s ~/.bashrc config`) is moved aside as a link, the file
// it points at untouched, as is a hooks link and what it points at; a hard link to a file outside keeps that
// file's content (the config is replaced, not written); a git directory
// reached through a link is not opened; a file a deny_write rule covers
// is left alone.
func TestDefuseNoFollow(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "bashrc")
	hard := filepath.Join(dir, "hard")
	body := "[core]\n\tfsmonitor = this is the user's file\n"
	tree(t, dir, "bashrc="+body, "hard="+body, "g/HEAD=x\n", "h/HEAD=x\n", "p/config="+body, "hooksdir/ls=#!/bin/sh\n")
	g := filepath.Join(dir, "g")
	if err := os.Symlink(outside, filepath.Join(g, "config")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "hooksdir"), filepath.Join(g, "hooks")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(hard, filepath.Join(dir, "h", "config")); err != nil {
		t.Fatal(err)
	}
	o := DefuseOptions{UID: os.Getuid(), Now: time.Unix(1, 0),
		Protected: func(p string) bool { return p == filepath.Join(dir, "p", "config") }}
	acts, err := Defuse(g, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "hooksdir", "ls")); err != nil {
		t.Errorf("a file of the directory a hooks link points at was moved: %v", err)
	}
	if read(t, outside) != body {
		t.Errorf("the file the link points at was changed: %q", read(t, outside))
	}
	if target, err := os.Readlink(filepath.Join(g, "config.aigate-1")); err != nil || target != outside {
		t.Errorf("link not moved aside as it was: %q, %v", target, err)
	}
	if _, err := os.Lstat(filepath.Join(g, "config")); err == nil || len(acts) != 2 {
		t.Errorf("config still there or actions %+v", acts)
	}
	if _, err := Defuse(filepath.Join(dir, "h"), o); err != nil {
		t.Fatal(err)
	}
	if read(t, hard) != body || strings.Contains(read(t, filepath.Join(dir, "h", "config")), "fsmonitor") {
		t.Errorf("hard link: outside %q, config %q", read(t, hard), read(t, filepath.Join(dir, "h", "config")))
	}
	if err := os.Symlink(filepath.Join(dir, "h"), filepath.Join(dir, "via")); err != nil {
		t.Fatal(err)
	}
	if _, err := Defuse(filepath.Join(dir, "via"), o); err == nil {
		t.Error("a git directory reached through a link was opened")
	}
	if _, err := Defuse(filepath.Join(dir, "p"), o); err == nil || read(t, filepath.Join(dir, "p", "config")) != body {
		t.Errorf("a protected config was changed (err %v)", err)
	}
}

// TestDefuseNew: in a project reached through a link (a home under
// /var/home), a nested repository made during the run is defused, one
// there at the start is not, and one a .git file points at outside the
// project is reported, not changed.
func TestDefuseNew(t *testing.T) {
	dir := t.TempDir()
	planted := "[core]\n\tfsmonitor = x\n"
	tree(t, dir, "real/p/.git/HEAD=x\n", "real/p/.git/config="+planted,
		"real/p/new/.git/HEAD=x\n", "real/p/new/.git/config="+planted,
		"out/HEAD=x\n", "out/config="+planted, "real/p/far/.git=gitdir: "+filepath.Join(dir, "out")+"\n")
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	proj := filepath.Join(dir, "link", "p")
	known := map[string]bool{filepath.Join(dir, "real", "p", ".git"): true}
	acts, err := DefuseNew(Options{ProjectRoot: proj}, DefuseOptions{UID: os.Getuid(), Known: known, Now: time.Unix(1, 0)})
	if len(acts) != 1 || acts[0].Path != filepath.Join(dir, "real/p/new/.git/config") {
		t.Errorf("actions %+v", acts)
	}
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "out")+" (core.fsmonitor), outside the project") {
		t.Errorf("the git directory outside was not reported: %v", err)
	}
	for _, p := range []string{"real/p/.git/config", "out/config"} {
		if read(t, filepath.Join(dir, p)) != planted {
			t.Errorf("%s changed", p)
		}
	}
}

// BenchmarkDefuseNew is the agent's check after a run in which the
// sandbox made no git directory: to be compared with BenchmarkScan on the
// same tree (it is a scan, and a lookup per git directory).
func BenchmarkDefuseNew(b *testing.B) {
	root := bigTree(b)
	known := map[string]bool{}
	for _, g := range Scan(Options{ProjectRoot: root}).GitDirs {
		known[g] = true
	}
	b.ResetTimer()
	for range b.N {
		if acts, err := DefuseNew(Options{ProjectRoot: root}, DefuseOptions{UID: os.Getuid(), Known: known, Now: time.Unix(1, 0)}); len(acts) != 0 || err != nil {
			b.Fatal(acts, err)
		}
	}
}
