//go:build linux

package lsm

import (
	"os"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestLSMCarveMatchesPolicy: a deny_write path rule with a directory
// carved out of it (policy.FileSet.Carve, the run's rule on
// ~/.claude/projects but its own project directory) gets the reference
// matcher's verdicts in the kernel: the carved directory is writable, and
// directories made in it, a longer rule beneath it (its memory) is not,
// and every other directory, present or made inside, is not, with the
// rule's event. The directory above the carve exists, so this also shows
// that its inode does not deny the carve.
func TestLSMCarveMatchesPolicy(t *testing.T) {
	dir := tempDir(t)
	projects := dir + "/home/.claude/projects"
	own := projects + "/-home-u-p"
	p, err := policy.Compile(&policy.Policy{DenyWrite: []policy.PathRule{
		{Pattern: projects + "/", Except: []string{own}},
		{Pattern: own + "/memory/"},
	}}, policy.Env{Home: dir + "/home"})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{
		own + "/s.jsonl",
		own + "/s/subagents/a.jsonl",
		own + "/memory/MEMORY.md",
		projects + "/-home-u-q/memory/MEMORY.md",
		projects + "/-home-u-q/s.jsonl",
		projects + "/-home-u-px/memory/MEMORY.md",
	}
	for _, path := range paths {
		touch(t, path)
	}
	l := openLSM(t)
	sb := addSandbox(t, l, p, policy.ModeEnforce)
	for _, path := range paths {
		want, deny := p.MatchOpen(path, true)
		code, _ := run(t, sb, "open", path, "w")
		if got := code == exitEPERM; got != deny {
			t.Errorf("open(%s, w): kernel denied=%v (exit %d), policy denied=%v (rule %d)", path, got, code, deny, want)
			continue
		}
		if deny {
			if ev := nextEvent(t, l); ev.Rule != uint32(want) {
				t.Errorf("open(%s, w): kernel reported rule %d, policy %d", path, ev.Rule, want)
			}
		}
	}
	for path, deny := range map[string]bool{
		own + "/new":              false,
		projects + "/-home-u-new": true,
		own + "/memory/sub":       true,
	} {
		code, _ := run(t, sb, "mkdir", path)
		if got := code == exitEPERM; got != deny {
			t.Errorf("mkdir(%s): kernel denied=%v (exit %d), want %v", path, got, code, deny)
			continue
		}
		if deny {
			want, _ := p.Write.Match(path)
			if ev := nextEvent(t, l); ev.Rule != uint32(want) {
				t.Errorf("mkdir(%s): kernel reported rule %d, policy %d", path, ev.Rule, want)
			}
		} else if _, err := os.Stat(path); err != nil {
			t.Errorf("mkdir(%s): %v", path, err)
		}
	}
}
