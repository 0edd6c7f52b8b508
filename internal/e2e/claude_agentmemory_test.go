//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aigate-dev/aigate/internal/claudestate"
)

// memoAgent is a user's subagent with a memory of user scope: Claude Code
// gives it ~/.claude/agent-memory/memo/ and loads its MEMORY.md into the
// subagent's system prompt at every start.
const memoAgent = "---\nname: memo\ndescription: keeps notes\nmemory: user\ntools: Write, Read\n---\nYou keep notes.\n"

// agentMemoryDir finds the memory directory Claude Code names in a
// subagent's system prompt ("Persistent Agent Memory").
var agentMemoryDir = regexp.MustCompile(`(/[^\s'"` + "`" + `]*agent-memory/memo)/`)

// TestE2EClaudeCodeSubagentMemory: the real Claude Code inside runs a
// subagent with `memory: user` whose memory the defaults keep read-only
// (~/.claude/agent-memory/, which every later subagent outside loads).
// The subagent starts with the user's notes and saves its own, in the
// sandboxes' directory run points CLAUDE_CODE_REMOTE_MEMORY_DIR at; the
// session ends normally, nothing is refused (but the session key of BPF
// LSM, claudeSessionKey), and the real memory is as it was.
func TestE2EClaudeCodeSubagentMemory(t *testing.T) {
	claude := claudeBinary(t)
	eachBackend(t, func(t *testing.T, w *world) {
		w.homeOutsideTmp()
		w.defaults()
		const users = "- the user's note\n"
		w.write("~/.claude/agents/memo.md", memoAgent)
		w.write("~/.claude/agent-memory/memo/MEMORY.md", users)
		w.write("README.md", "# a project\n")
		if out, err := exec.Command("git", "init", "-q", w.proj).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		mock := startClaudeMock(t, nil)
		var mu sync.Mutex
		var dirs []string
		var loaded bool
		mock.reply = func(system string, results []string) (string, any) {
			m := agentMemoryDir.FindStringSubmatch(system)
			if m == nil {
				// The main session: delegate once to the subagent.
				if len(results) == 0 {
					return "Agent", map[string]string{"subagent_type": "memo", "description": "note", "prompt": "Save a note."}
				}
				return "", nil
			}
			mu.Lock()
			dirs = append(dirs, m[1])
			loaded = loaded || strings.Contains(system, "the user's note")
			mu.Unlock()
			if len(results) == 0 {
				return "Write", map[string]string{"file_path": m[1] + "/MEMORY.md", "content": users + "- a subagent note\n"}
			}
			return "", nil
		}
		w.aigate("allow", "net", "127.0.0.1:"+mock.port())
		w.env = append(w.env, "ANTHROPIC_BASE_URL=http://"+mock.addr, "ANTHROPIC_API_KEY=sk-ant-dummy-e2e",
			"DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1")
		r := w.run(nil, claude, "-p", "Please note something.", "--allowedTools", "Agent,Write,Read")
		if r.code != 0 || !strings.Contains(r.stdout, "All done.") {
			t.Fatalf("the session did not complete normally: %s", r)
		}
		own := filepath.Join(w.path("~/"+claudestate.SandboxAgentMemoryDir), "agent-memory", "memo")
		mu.Lock()
		if len(dirs) == 0 || dirs[0] != own {
			t.Errorf("the subagent's memory inside: %q, want %s", dirs, own)
		}
		if !loaded {
			t.Errorf("the subagent inside did not start with the user's notes")
		}
		mu.Unlock()
		if got, _ := os.ReadFile(filepath.Join(own, "MEMORY.md")); string(got) != users+"- a subagent note\n" {
			t.Errorf("the subagent's note was not saved inside: %q", got)
		}
		if got, _ := os.ReadFile(w.path("~/.claude/agent-memory/memo/MEMORY.md")); string(got) != users {
			t.Errorf("the real agent memory changed: %q", got)
		}
		for _, e := range r.events {
			if !claudeSessionKey(w, e) {
				t.Errorf("refused: %+v", e)
			}
		}
		if t.Failed() {
			t.Logf("%s", r)
		}
	})
}

// hookEnvSettings are the user's settings with a SessionStart hook that
// sets the environment of the session's Bash commands the documented way,
// by appending to $CLAUDE_ENV_FILE (~/.claude/session-env/<session>/).
const hookEnvSettings = `{"hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "echo 'export FROM_HOOK=1' >> \"$CLAUDE_ENV_FILE\""}]}]}}` + "\n"

// TestE2EClaudeCodeSessionEnvHook: ~/.claude/session-env is read-only
// inside (a default: a session resumed outside sources what is there
// before each Bash command), so a SessionStart hook's $CLAUDE_ENV_FILE
// cannot be written. Claude Code still runs the session to its end, its
// Bash commands run without the hook's variable, and nothing is left in
// ~/.claude/session-env. Any refusal reported is of that directory (or
// the session key of BPF LSM, claudeSessionKey).
func TestE2EClaudeCodeSessionEnvHook(t *testing.T) {
	claude := claudeBinary(t)
	eachBackend(t, func(t *testing.T, w *world) {
		w.homeOutsideTmp()
		w.defaults()
		w.write("~/.claude/settings.json", hookEnvSettings)
		w.write("README.md", "# a project\n")
		mock := startClaudeMock(t, []string{`echo "hook=${FROM_HOOK:-unset}"`})
		w.aigate("allow", "net", "127.0.0.1:"+mock.port())
		w.env = append(w.env, "ANTHROPIC_BASE_URL=http://"+mock.addr, "ANTHROPIC_API_KEY=sk-ant-dummy-e2e",
			"DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1")
		r := w.run(nil, claude, "-p", "Please set up the project.", "--allowedTools", "Bash")
		t.Logf("%s", r)
		if r.code != 0 || !strings.Contains(r.stdout, "All done.") {
			t.Fatalf("the session did not complete normally: %s", r)
		}
		if res := mock.seen(); len(res) != 1 || !strings.Contains(res[0], "hook=unset") {
			t.Errorf("the Bash command saw %q, want hook=unset", res)
		}
		if ents, _ := os.ReadDir(w.path("~/.claude/session-env")); len(ents) != 0 {
			t.Errorf("~/.claude/session-env holds %v after the run", ents)
		}
		for _, e := range r.events {
			// The hook's own write to $CLAUDE_ENV_FILE in its session's
			// directory is a refusal claude does not make itself (its own
			// are not reported: claudeOwnState).
			rel, hook := strings.CutPrefix(e.Path, w.path("~/.claude/session-env")+"/")
			hook = hook && strings.Contains(rel, "/")
			if !hook && !claudeSessionKey(w, e) {
				t.Errorf("refused: %+v", e)
			}
		}
	})
}
