//go:build linux

package escape

import (
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeClaudeSecureStorage: with CLAUDE_SECURESTORAGE_CONFIG_DIR in
// the user's environment, Claude Code (2.1.332) keeps its login,
// .credentials.json, in that directory, and so does the claude the user
// starts outside from the same shell: a token planted there would have the
// user's next sessions run under another account. The write is refused
// with a write event naming the run's rule for that file (Landlock alone,
// where the kernel has it, refuses it too, with an event of its own), the
// user's token stays readable inside, and run names the file.
func TestEscapeClaudeSecureStorage(t *testing.T) {
	const sec = "~/.claude-secure"
	eachBackend(t, func(t *testing.T, b0 *box) {
		b := homeBox(t, b0)
		b.env = []string{claudestate.SecureStorageEnv + "=" + b.path(sec)}
		b.write(sec+"/.credentials.json", userCredentials)
		plants := []plant{
			{"credentials", `echo '{"claudeAiOauth":{"accessToken":"sk-ant-oat01-attacker"}}' > ` + sec + `/.credentials.json`, sec + "/.credentials.json"},
		}
		// The control: claude inside logs in with the user's token.
		r := plantAll(t, b, plants, `grep -q sk-ant-oat01-users `+sec+`/.credentials.json`)
		if got := b.read(sec + "/.credentials.json"); got != userCredentials {
			t.Errorf("%s/.credentials.json changed: %q", sec, got)
		}
		// Landlock, where the kernel has it, keeps the directory read-only
		// and refuses first; without it the run's rule refuses.
		if e, ok := r.denied(events.OpWrite, b.path(sec+"/.credentials.json")); ok && e.Backend != events.BackendLandlock && e.RuleText != sec+"/.credentials.json" {
			t.Errorf("the write event names %q, not the run's rule %s/.credentials.json: %+v", e.RuleText, sec, e)
		}
		if !strings.Contains(r.stderr, sec+"/.credentials.json ($"+claudestate.SecureStorageEnv) {
			t.Errorf("run did not name the login in $%s:\n%s", claudestate.SecureStorageEnv, r.stderr)
		}
		if t.Failed() {
			t.Logf("%s", r)
		}
	})
}

// TestEscapeClaudeSecureStorageRefused: a CLAUDE_SECURESTORAGE_CONFIG_DIR
// that aigate cannot keep (inside the project, which the sandbox may
// write, so a token could be planted; outside the home) stops the run
// before the command starts, saying why and what to do.
func TestEscapeClaudeSecureStorageRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		b := homeBox(t, b0)
		claudeDirRefused(t, b, claudestate.SecureStorageEnv, b.path(".claude-secure"), "/var/tmp/claude-secure")
	})
}
