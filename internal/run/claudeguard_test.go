//go:build linux

package run

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/config"
)

// TestClaudeMemoryEnv: the command's environment points Claude Code's
// auto memory at the sandboxes' own directory for the project, in place
// of the user's value, and that directory starts with the user's notes.
func TestClaudeMemoryEnv(t *testing.T) {
	home := t.TempDir()
	proj := filepath.Join(home, "proj")
	real := filepath.Join(home, ".claude", "projects", claudestate.Sanitize(proj), "memory")
	if err := os.MkdirAll(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(proj, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "MEMORY.md"), []byte("- a note\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := claudeMemoryEnv([]string{"A=1", claudestate.MemoryOverrideEnv + "=/srv/mem"}, home, "", os.Geteuid(),
		&config.Paths{ProjectRoot: proj, WorkDir: proj})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(home, claudestate.SandboxMemoryDir, claudestate.Sanitize(proj))
	if want := []string{"A=1", claudestate.MemoryOverrideEnv + "=" + dir}; !slices.Equal(env, want) {
		t.Errorf("env %q, want %q", env, want)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "MEMORY.md")); string(got) != "- a note\n" {
		t.Errorf("the sandbox's memory holds %q", got)
	}
}

// TestClaudeAgentMemoryEnv: the command's environment points the memory
// of Claude Code's subagents at the sandboxes' own directory, in place of
// the user's value, and that directory starts with the user's notes; the
// real memory (a default deny_write) is left as it was.
func TestClaudeAgentMemoryEnv(t *testing.T) {
	home := t.TempDir()
	real := filepath.Join(home, ".claude", "agent-memory", "reviewer")
	if err := os.MkdirAll(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "MEMORY.md"), []byte("- a note\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := claudeAgentMemoryEnv([]string{"A=1", claudestate.RemoteMemoryEnv + "=/srv/remote"}, home, "", os.Geteuid(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(home, claudestate.SandboxAgentMemoryDir)
	if want := []string{"A=1", claudestate.RemoteMemoryEnv + "=" + dir}; !slices.Equal(env, want) {
		t.Errorf("env %q, want %q", env, want)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "agent-memory", "reviewer", "MEMORY.md")); string(got) != "- a note\n" {
		t.Errorf("the sandbox's agent memory holds %q", got)
	}
	if env, err := claudeAgentMemoryEnv([]string{"A=1"}, "", "", os.Geteuid(), nil); err != nil || !slices.Equal(env, []string{"A=1"}) {
		t.Errorf("without a home: %q, %v", env, err)
	}
}

// TestCloneGuard: a clone an installed plugin comes from is left as it was
// when unchanged, moved aside when changed, said when removed; without
// installed plugins nothing is watched.
func TestCloneGuard(t *testing.T) {
	home := t.TempDir()
	clone := filepath.Join(home, ".claude", "plugins", "marketplaces", "m")
	write := func(path, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if g := guardClones(home, os.Geteuid(), nil); g != nil {
		t.Fatalf("no registry, watched %+v", g.clones)
	}
	write(filepath.Join(home, ".claude", "plugins", "installed_plugins.json"), `{"plugins": {"fmt@m": [{}]}}`)
	write(filepath.Join(home, ".claude", "plugins", "known_marketplaces.json"), `{"m": {"installLocation": "`+clone+`"}}`)
	write(filepath.Join(clone, "plugins", "fmt", "hooks", "hooks.json"), "{}\n")
	now := time.Unix(1796500000, 0)

	if msgs := checkNow(guardClones(home, os.Geteuid(), nil), home, now); len(msgs) != 0 {
		t.Errorf("unchanged: %q", msgs)
	}
	g := guardClones(home, os.Geteuid(), nil)
	write(filepath.Join(clone, "plugins", "fmt", "hooks", "hooks.json"), `{"hooks": {"SessionStart": []}}`)
	msgs := checkNow(g, home, now)
	aside := clone + ".aigate-changed-1796500000"
	if _, err := os.Stat(aside); err != nil || len(msgs) != 1 || !strings.Contains(msgs[0], "moved it to ~/.claude/plugins/marketplaces/m.aigate-changed-1796500000") {
		t.Errorf("changed: %q, %v", msgs, err)
	}
	if _, err := os.Lstat(clone); err == nil {
		t.Errorf("the changed clone stayed in place")
	}
	if err := os.Rename(aside, clone); err != nil {
		t.Fatal(err)
	}
	g = guardClones(home, os.Geteuid(), nil)
	if err := os.RemoveAll(clone); err != nil {
		t.Fatal(err)
	}
	if msgs := checkNow(g, home, now); len(msgs) != 1 || !strings.Contains(msgs[0], "was removed inside the sandbox") {
		t.Errorf("removed: %q", msgs)
	}
}

// checkNow is what the agent does with g.request() once the sandbox ended.
func checkNow(g *cloneGuard, home string, now time.Time) []string {
	var clones []claudestate.Clone
	var sums []string
	for _, c := range g.request() {
		clones = append(clones, claudestate.Clone{Marketplace: c.Marketplace, Dir: c.Dir, Plugins: c.Plugins})
		sums = append(sums, c.Sum)
	}
	return claudestate.CheckClones(clones, sums, home, now)
}
