//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/claudestate"
)

// TestE2EClaudeCodeConfigDir: the real Claude Code with CLAUDE_CONFIG_DIR
// set (its state moved from ~/.claude, and ~/.claude.json into it) still
// answers inside the sandbox, which keeps that directory as it keeps
// ~/.claude: it writes its .claude.json and its transcripts there, nothing
// it does at a start is refused, and its settings stay read-only.
func TestE2EClaudeCodeConfigDir(t *testing.T) {
	claude := claudeBinary(t)
	eachBackend(t, func(t *testing.T, w *world) {
		w.homeOutsideTmp()
		w.defaults()
		mock := startClaudeMock(t, nil)
		w.aigate("allow", "net", "127.0.0.1:"+mock.port())
		cw := w.path("~/.claude-work")
		w.write("~/.claude-work/settings.json", `{"model": "opus"}`+"\n")
		w.env = append(w.env, "ANTHROPIC_BASE_URL=http://"+mock.addr, "ANTHROPIC_API_KEY=sk-ant-dummy-e2e",
			"DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
			claudestate.ConfigDirEnv+"="+cw)
		r := w.run(nil, claude, "-p", "Please set up the project.")
		t.Logf("claude: %s", r)
		if r.code != 0 || !strings.Contains(r.stdout, "All done.") {
			t.Errorf("claude with %s set did not answer: %s", claudestate.ConfigDirEnv, r)
		}
		for _, e := range r.events {
			if strings.HasPrefix(e.Path, cw) || strings.HasPrefix(e.Path, w.path("~/.claude")) {
				t.Errorf("claude's own state was refused: %+v", e)
			}
		}
		if _, err := os.Stat(filepath.Join(cw, ".claude.json")); err != nil {
			t.Errorf("claude kept no .claude.json in %s: %v", cw, err)
		}
		if _, err := os.Stat(w.path("~/.claude.json")); err == nil {
			t.Errorf("claude wrote ~/.claude.json although %s moves it", claudestate.ConfigDirEnv)
		}
		own := filepath.Join(cw, "projects", claudestate.Sanitize(w.proj))
		if ents, err := os.ReadDir(own); err != nil || len(ents) == 0 {
			t.Errorf("no transcript in %s: %v", own, err)
		}
		if !strings.Contains(r.stderr, "$"+claudestate.ConfigDirEnv+" (~/.claude-work) is kept as ~/.claude is") {
			t.Errorf("run did not name the moved state directory:\n%s", r.stderr)
		}
	})
}
