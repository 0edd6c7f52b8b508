//go:build linux

package run

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

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
	env, err := claudeMemoryEnv([]string{"A=1", claudestate.MemoryOverrideEnv + "=/srv/mem"}, home, os.Geteuid(),
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
