//go:build linux

package escape

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
)

// TestEscapeClaudeOwnRefusals: the refusals Claude Code makes of its own
// state at every start (its .claude.json lock and temporary file, the
// lock beside history.jsonl, a new session's directory) are refused and
// not reported; the same calls on look-alike names, and a write into a
// session's existing directory, are refused and reported (Landlock's
// write event from the refused call; audit off, as on a kernel without).
func TestEscapeClaudeOwnRefusals(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		if !homeProtected() {
			t.Fatal("no Landlock on this kernel") // every kernel the suite runs on has it
		}
		b := homeBox(t, b0)
		auditOff(t)
		const sid = "0b5e7f2c-1111-4a4a-9c9c-222233334444"
		b.write("~/.claude/session-env/"+sid+"/sessionstart-hook-0.sh", "export A=1\n")
		quiet := []string{"~/.claude.json.lock", "~/.claude.json.tmp.4242.a1b2c3d4e5f6", "~/.claude/history.jsonl.lock",
			"~/.claude/session-env/9a9a9a9a-2222-4b4b-8d8d-555566667777"}
		loud := []string{"~/.claude.json.lock2", "~/.claude.json.tmp.4242", "~/.bashrc.tmp.1.2", "~/.claude/history.jsonl.lock.d",
			"~/.claude/session-env/not-a-session", "~/.claude/session-env/" + sid + "/cwdchanged-hook-1.sh"}
		var script []string
		for i, p := range append(append([]string{}, quiet...), loud...) {
			switch {
			case strings.Contains(p, ".tmp.") || strings.HasSuffix(p, ".sh"):
				script = append(script, "touch "+p+" 2>/dev/null && echo MADE"+strconv.Itoa(i))
			default:
				script = append(script, "mkdir "+p+" 2>/dev/null && echo MADE"+strconv.Itoa(i))
			}
		}
		r := b.sh(strings.Join(script, "\n") + "\necho done")
		// The last, a new file in a session's existing directory, is
		// refused by the fanotify backend's rule after it was made
		// (TestEscapeClaudeSessionEnv): only its event matters here.
		last := "MADE" + strconv.Itoa(len(quiet)+len(loud)-1)
		if !strings.Contains(r.stdout, "done") || strings.Contains(strings.ReplaceAll(r.stdout, last, ""), "MADE") {
			t.Fatalf("a name was made, or the script did not run through:\n%s", r)
		}
		has := func(p string) bool {
			for _, e := range r.events {
				if e.Op == events.OpWrite && e.Path == b.path(p) {
					return true
				}
			}
			return false
		}
		for _, p := range append(append([]string{}, quiet...), loud[:len(loud)-1]...) {
			if _, err := os.Lstat(b.path(p)); err == nil {
				t.Errorf("%s was made inside the sandbox", p)
			}
		}
		for _, p := range quiet {
			if has(p) {
				t.Errorf("Claude Code's own refusal %s was reported", p)
			}
		}
		for _, p := range loud {
			if !has(p) {
				t.Errorf("no write event for %s", p)
			}
		}
		if t.Failed() {
			t.Logf("%s", r)
		}
		if landlock.ABI() < 7 {
			return // no audit records of Landlock's refusals on this kernel
		}
		// With audit on, its records name only the directory of a made
		// name: the agent matches them with the refused calls' reports.
		auditOn(t)
		var mk []string
		for _, p := range quiet {
			if strings.Contains(p, ".tmp.") {
				mk = append(mk, "touch "+p+" 2>/dev/null")
			} else {
				mk = append(mk, "mkdir "+p+" 2>/dev/null")
			}
		}
		// The sleep outlasts the agent's wait for a call's report
		// (250 ms): an event it did not drop would be in r (without
		// the agent's rule, all four are).
		r = b.sh(strings.Join(mk, "\n") + "\nsleep 1; echo done")
		for _, e := range r.events {
			if e.Backend == events.BackendLandlock {
				t.Errorf("with audit on, Claude Code's own refusal was reported: %+v", e)
			}
		}
	})
}
