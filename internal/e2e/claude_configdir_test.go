//go:build linux

package e2e

import (
	"os"
	"os/exec"
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
		mock := w.claudeHome(t)
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
			// Its session's messaging key, refused by deny_read *.key on
			// BPF LSM as in ~/.claude (claudeSessionKey).
			key := e.Op == "write" && e.Rule == "*.key" && filepath.Dir(e.Path) == filepath.Join(cw, "sessions")
			if !key && (strings.HasPrefix(e.Path, cw) || strings.HasPrefix(e.Path, w.path("~/.claude"))) {
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

// TestE2EClaudeCodeRemoteSettingsPlant: ~/.claude/remote-settings.json
// (the cache of an organization's managed settings) stays writable inside,
// since claude inside writes it at every interactive start. A SessionStart
// hook a sandbox plants there does not run in the next claude outside that
// logs in with an API key: Claude Code 2.1.332 applies the cache only for
// an organization login, and checks a signature on it. Should a later
// version apply it, this fails, and the file must become a deny_write
// default (docs/threat-model.md, "Claude Code's state").
func TestE2EClaudeCodeRemoteSettingsPlant(t *testing.T) {
	claude := claudeBinary(t)
	eachBackend(t, func(t *testing.T, w *world) {
		mock := w.claudeHome(t)
		marker := w.path("~/remote-hook-ran")
		hook := `{"hooks":{"SessionStart":[{"hooks":[{"type":"command","command":"touch ` + marker + `"}]}]}}`
		r := w.run(nil, "sh", "-c", "echo '"+hook+"' > ~/.claude/remote-settings.json && echo planted")
		if !strings.Contains(r.stdout, "planted") {
			t.Fatalf("the sandbox could not write ~/.claude/remote-settings.json: %s", r)
		}
		// The user's next claude, outside any sandbox.
		out := exec.Command(claude, "-p", "Please set up the project.")
		out.Dir = w.proj
		out.Env = append(append([]string{}, w.env...), "ANTHROPIC_BASE_URL=http://"+mock.addr, "ANTHROPIC_API_KEY=sk-ant-dummy-e2e",
			"DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1")
		var buf strings.Builder
		out.Stdout, out.Stderr = &buf, &buf
		if err := RunBounded(out, runLimit); err != nil {
			t.Fatalf("claude outside: %v\n%s", err, buf.String())
		}
		if !strings.Contains(buf.String(), "All done.") {
			t.Fatalf("claude outside did not answer:\n%s", buf.String())
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("a hook planted in ~/.claude/remote-settings.json ran outside: make it a deny_write default")
		}
	})
}

// TestE2EClaudeCodeSecureStorage: the real Claude Code with
// CLAUDE_SECURESTORAGE_CONFIG_DIR set logs in with the .credentials.json of
// that directory, not ~/.claude's, inside the sandbox (where the file stays
// readable) and outside; a token the sandbox writes there is refused, so
// the next claude outside still sends the user's. Should a later version
// read its login elsewhere, the first check fails and aigate must follow.
func TestE2EClaudeCodeSecureStorage(t *testing.T) {
	claude := claudeBinary(t)
	eachBackend(t, func(t *testing.T, w *world) {
		mock := w.claudeHome(t)
		login := func(token string) string {
			return `{"claudeAiOauth":{"accessToken":"` + token + `","refreshToken":"sk-ant-ort01-e2e","expiresAt":4102444800000,"scopes":["user:inference","user:profile"],"subscriptionType":"max"}}` + "\n"
		}
		w.write("~/.claude/.credentials.json", login("sk-ant-oat01-default"))
		w.write("~/.claude-login/.credentials.json", login("sk-ant-oat01-users"))
		env := []string{"ANTHROPIC_BASE_URL=http://" + mock.addr, "DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1",
			"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", claudestate.SecureStorageEnv + "=" + w.path("~/.claude-login")}
		w.env = append(w.env, env...)
		r := w.run(nil, claude, "-p", "Please set up the project.")
		t.Logf("claude inside: %s", r)
		if r.code != 0 || !strings.Contains(r.stdout, "All done.") {
			t.Errorf("claude with %s set did not answer inside: %s", claudestate.SecureStorageEnv, r)
		}
		for _, e := range r.events {
			if strings.HasPrefix(e.Path, w.path("~/.claude-login")) {
				t.Errorf("claude's own login was refused: %+v", e)
			}
		}
		if b := mock.bearersSeen(); len(b) == 0 || b[0] != "sk-ant-oat01-users" {
			t.Fatalf("claude inside logged in with %q, want the token of %s (sk-ant-oat01-users)", b, claudestate.SecureStorageEnv)
		}
		r = w.run(nil, "sh", "-c", `echo '`+strings.TrimSpace(login("sk-ant-oat01-attacker"))+`' > ~/.claude-login/.credentials.json && echo planted`)
		if strings.Contains(r.stdout, "planted") {
			t.Errorf("the sandbox wrote ~/.claude-login/.credentials.json: %s", r)
		}
		// The user's next claude, outside any sandbox.
		out := exec.Command(claude, "-p", "Please set up the project.")
		out.Dir = w.proj
		out.Env = append(append([]string{}, w.env...), env...)
		var buf strings.Builder
		out.Stdout, out.Stderr = &buf, &buf
		if err := RunBounded(out, runLimit); err != nil {
			t.Fatalf("claude outside: %v\n%s", err, buf.String())
		}
		b := mock.bearersSeen()
		if len(b) == 0 || b[len(b)-1] != "sk-ant-oat01-users" {
			t.Errorf("claude outside logged in with %q, want sk-ant-oat01-users", b)
		}
	})
}
