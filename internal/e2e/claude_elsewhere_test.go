//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/claudestate"
)

// TestE2EClaudeCodeElsewhere: the real Claude Code started inside the
// sandbox outside the directory run was started in (a subdirectory of the
// project, another directory) keys its session by that directory, whose
// ~/.claude/projects entry the run's rule does not carve out (only the
// run's own project may be written there, so that no sandbox plants
// another project's auto memory). It cannot make that directory, and still
// answers; nothing is left in ~/.claude/projects for it.
func TestE2EClaudeCodeElsewhere(t *testing.T) {
	claude := claudeBinary(t)
	eachBackend(t, func(t *testing.T, w *world) {
		mock := w.claudeHome(t)
		if err := os.MkdirAll(filepath.Join(w.proj, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		other := w.path("~/other")
		if err := os.MkdirAll(other, 0o755); err != nil {
			t.Fatal(err)
		}
		w.env = append(w.env, "ANTHROPIC_BASE_URL=http://"+mock.addr, "ANTHROPIC_API_KEY=sk-ant-dummy-e2e",
			"DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1")
		for _, dir := range []string{filepath.Join(w.proj, "sub"), other} {
			r := w.run(nil, "sh", "-c", `cd "$1" && exec "$2" -p 'Please set up the project.'`, "sh", dir, claude)
			t.Logf("claude in %s: %s", dir, r)
			if r.code != 0 || !strings.Contains(r.stdout, "All done.") {
				t.Errorf("claude in %s did not answer: %s", dir, r)
			}
			key := w.path("~/.claude/projects/" + claudestate.Sanitize(dir))
			if _, err := os.Lstat(key); err == nil {
				t.Errorf("%s was made inside the sandbox", key)
			}
		}
	})
}
