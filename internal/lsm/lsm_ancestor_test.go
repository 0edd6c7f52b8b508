//go:build linux

package lsm

import (
	"os"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestLSMReplaceAncestors: renaming (either end) or symlinking a
// directory above a protected path is refused as a write to that path,
// with the protected path's rule, exactly where policy.MatchReplace says
// so: `mv .git /tmp/old; mv /tmp/g .git` would otherwise replace the hooks.
// rmdir of such a directory is not refused (policy.MatchRemoveDir): the
// kernel fails it (ENOTEMPTY) without an event, and an empty one above a
// protected path that does not exist is removed. Outside the sandbox
// nothing is refused.
func TestLSMReplaceAncestors(t *testing.T) {
	dir := tempDir(t)
	home, proj := dir+"/home", dir+"/proj"
	touch(t, proj+"/.git/hooks/pre-commit")
	touch(t, proj+"/.git/objects/x")
	touch(t, proj+"/src/main.go")
	touch(t, home+"/.config/git/config")
	touch(t, home+"/.config/other/x")
	touch(t, home+"/.kube/config")
	touch(t, dir+"/g/hooks/pre-commit")
	p, _ := policy.Merge(&policy.Config{
		DenyWrite: []policy.PathRule{{Pattern: ".git/hooks/"}, {Pattern: "~/.config/git/"}, {Pattern: "~/.local/bin/"}},
		DenyRead:  []policy.PathRule{{Pattern: "~/.kube/config"}},
	}, nil, false)
	c, err := policy.Compile(p, policy.Env{Home: home, ProjectRoot: proj})
	if err != nil {
		t.Fatal(err)
	}
	l := openLSM(t)
	sb := addSandbox(t, l, c, policy.ModeEnforce)

	for _, tc := range []struct {
		path string // the end that MatchReplace decides on
		args []string
	}{
		{proj + "/.git", []string{"rename", proj + "/.git", dir + "/old"}},
		{proj, []string{"rename", proj, dir + "/proj2"}},
		{home + "/.config", []string{"rename", home + "/.config", dir + "/c"}},
		{home + "/.kube", []string{"rename", home + "/.kube", dir + "/k"}},
		{home + "/.local", []string{"rename", dir + "/g", home + "/.local"}}, // the new end
		{home + "/.local", []string{"symlink", dir + "/g", home + "/.local"}},
	} {
		want, deny := c.MatchReplace(tc.path)
		if !deny {
			t.Fatalf("policy allows %v", tc.args)
		}
		expectWriteDenied(t, l, sb, tc.path, uint32(want), tc.args...)
	}
	noEvent(t, l)

	// Beside a protected path stays allowed, and so does creating an
	// ancestor (mkdir is not a replacement).
	for _, tc := range [][]string{
		{"rename", proj + "/.git/objects", proj + "/.git/objects2"},
		{"rename", proj + "/src", proj + "/src2"},
		{"rename", home + "/.config/other", home + "/.config/other2"},
	} {
		for _, end := range tc[1:] {
			if _, deny := c.MatchReplace(end); deny {
				t.Fatalf("policy denies %v", tc)
			}
		}
		expectAllowed(t, sb, tc...)
	}
	expectAllowed(t, sb, "mkdir", home+"/.local")
	// Claude Code tries rmdir on its project directory, above the auto
	// memory: ENOTEMPTY from the kernel, no refusal, no event.
	if _, deny := c.MatchRemoveDir(proj + "/.git"); deny {
		t.Fatalf("policy denies rmdir of .git")
	}
	if code, _ := run(t, sb, "rmdir", proj+"/.git"); code == exitEPERM || code == 0 {
		t.Errorf("rmdir of the non-empty .git: exit %d, want ENOTEMPTY", code)
	}
	// An empty directory above a protected path that does not exist.
	expectAllowed(t, sb, "rmdir", home+"/.local")
	if _, err := os.Stat(proj + "/.git/objects2/x"); err != nil {
		t.Fatal(err)
	}

	// Outside the sandbox nothing is refused.
	expectAllowed(t, nil, "rename", proj+"/.git", dir+"/old")
	expectAllowed(t, nil, "rename", dir+"/old", proj+"/.git")
	noEvent(t, l)
}
