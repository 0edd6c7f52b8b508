package run

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/events"
)

// TestReportSaysWhatWasLost: the summary counts a folded event as its
// denials, and the lines at the end say what did not arrive: lost on the
// way, or dropped by the kernel while the command ran (of this sandbox
// or another), so a short summary is never presented as complete.
func TestReportSaysWhatWasLost(t *testing.T) {
	var errb bytes.Buffer
	f := &cmdutil.Factory{Err: &errb, Log: zap.NewNop()}
	r := newRunReporter(f, reportOptions{})
	r.event(events.Event{Kind: events.KindNet, Op: events.OpConnect, Comm: "flood", Count: 1000})
	r.finish(0, 1000, 250)
	out := errb.String()
	for _, want := range []string{
		"(repeated 999 more times)",
		"the kernel dropped 250 events while the command ran",
		"1000 operations blocked (1000 connect)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "lost on the way") {
		t.Errorf("nothing was lost on the way:\n%s", out)
	}
}

// TestReportExplainsMultiplexer: a refused connect to a tmux or screen
// server (Claude Code asks tmux about its pane at every start in a tmux
// pane) ends the run with one line saying why it is refused, whoever
// connected; other unix refusals, and an audit-mode allowance, do not.
func TestReportExplainsMultiplexer(t *testing.T) {
	for _, c := range []struct {
		name string
		e    events.Event
		want bool
	}{
		{"tmux client", events.Event{Op: events.OpUnix, Comm: "tmux: client", Path: "/tmp/x/sock"}, true},
		{"tmux socket", events.Event{Op: events.OpUnix, Comm: "node", Path: "/tmp/tmux-1000/default"}, true},
		{"screen socket", events.Event{Op: events.OpUnix, Comm: "sh", Path: "/run/screen/S-me/123.pts-0.host"}, true},
		{"screen in home", events.Event{Op: events.OpUnix, Comm: "sh", Path: "/home/me/.screen/123.x"}, true},
		{"other socket", events.Event{Op: events.OpUnix, Comm: "node", Path: "/run/user/1000/bus"}, false},
		{"audit", events.Event{Op: events.OpUnix, Comm: "tmux", Path: "/tmp/tmux-1000/default", Audit: true}, false},
		{"read", events.Event{Op: events.OpRead, Comm: "tmux", Path: "/tmp/tmux-1000/x"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := reportTwice(c.e)
			if n := strings.Count(out, "cannot reach your tmux or screen server"); n != map[bool]int{true: 1}[c.want] {
				t.Errorf("said %d times, want it said once only for a refused connect to a multiplexer:\n%s", n, out)
			}
		})
	}
}

// TestReportExplainsClaudeSSH: claude's own refused exec of ssh (its probe
// of GitHub at every interactive start) ends the run with one line saying
// what it was; ssh run by another program, another refused exec by
// claude, and an audit-mode allowance do not.
func TestReportExplainsClaudeSSH(t *testing.T) {
	for _, c := range []struct {
		name string
		e    events.Event
		want bool
	}{
		{"claude's probe", events.Event{Op: events.OpExec, Comm: "claude", Path: "/usr/bin/ssh", RuleText: "ssh"}, true},
		{"ssh by a shell", events.Event{Op: events.OpExec, Comm: "sh", Path: "/usr/bin/ssh", RuleText: "ssh"}, false},
		{"curl by claude", events.Event{Op: events.OpExec, Comm: "claude", Path: "/usr/bin/curl", RuleText: "curl"}, false},
		{"audit", events.Event{Op: events.OpExec, Comm: "claude", Path: "/usr/bin/ssh", RuleText: "ssh", Audit: true}, false},
		{"read of ssh", events.Event{Op: events.OpRead, Comm: "claude", Path: "/usr/bin/ssh"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := reportTwice(c.e)
			if n := strings.Count(out, "claude runs ssh at its start"); n != map[bool]int{true: 1}[c.want] {
				t.Errorf("said %d times, want it said once only for claude's own refused exec of ssh:\n%s", n, out)
			}
		})
	}
}

// reportTwice is what a run that reported e twice says at its end.
func reportTwice(e events.Event) string {
	var errb bytes.Buffer
	f := &cmdutil.Factory{Err: &errb, Log: zap.NewNop()}
	r := newRunReporter(f, reportOptions{})
	r.event(e)
	r.event(e)
	r.finish(0, 0, 0)
	return errb.String()
}

// TestClaudeStateRule: the hint on installing outside follows refused
// writes to Claude Code's code-carrying state in ~/.claude and in the
// directory CLAUDE_CONFIG_DIR moves it to; not the settings, nor the login.
func TestClaudeStateRule(t *testing.T) {
	for _, tc := range []struct {
		rule, moved string
		want        bool
	}{
		{"~/.claude/plugins/cache/", "", true},
		{"~/.claude/settings.json", "", false},
		{"~/.claude/.credentials.json", "", false},
		{"~/.claude-work/hooks/", "~/.claude-work/", true},
		{"~/.claude-work/hooks/", "", false},
		{"~/.claude-work/.credentials.json", "~/.claude-work/", false},
		{"~/.claude-work/settings.local.json", "~/.claude-work/", false},
		{"~/.bashrc", "~/.claude-work/", false},
	} {
		e := events.Event{Op: events.OpWrite, RuleText: tc.rule}
		if got := claudeStateRule(e, tc.moved); got != tc.want {
			t.Errorf("%s (moved %q): %v, want %v", tc.rule, tc.moved, got, tc.want)
		}
	}
}
