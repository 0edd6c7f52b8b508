package claudestate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestProgram(t *testing.T) {
	o := Options{Home: "/home/u", ProjectRoot: "/home/u/p"}
	for _, tc := range []struct{ cmd, want string }{
		{"~/.claude/statusline.sh", "/home/u/.claude/statusline.sh"},
		{"  ~/.claude/statusline.sh --short", "/home/u/.claude/statusline.sh"},
		{`"$CLAUDE_PROJECT_DIR"/.claude/hooks/fmt.sh`, "/home/u/p/.claude/hooks/fmt.sh"},
		{"${HOME}/bin/hook && echo done", "/home/u/bin/hook"},
		{"bash ~/scripts/lint.sh", "/home/u/scripts/lint.sh"},
		{"/usr/bin/python3 '/home/u/my hooks/x.py' arg", "/home/u/my hooks/x.py"},
		{"FOO=1 ./scripts/check.sh", "/home/u/p/scripts/check.sh"},
		{"/opt/tools/statusline|cat", "/opt/tools/statusline"},
		// not files aigate follows
		{"npx prettier --write", ""},
		{"jq -r .x", ""},
		{"bash -c 'id'", ""},
		{"$TOOL/run.sh", ""},
		{"", ""},
	} {
		got, why := o.program(tc.cmd)
		if got != tc.want {
			t.Errorf("%q: got %q (%s), want %q", tc.cmd, got, why, tc.want)
		}
		if got == "" && why == "" {
			t.Errorf("%q: no reason given", tc.cmd)
		}
	}
}

// TestScan: the user's and the project's settings name scripts, which are
// listed with what names them; commands that are no file are said.
func TestScan(t *testing.T) {
	home := t.TempDir()
	proj := filepath.Join(home, "p")
	write := func(path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(home, ".claude", "settings.json"), `{
  "statusLine": {"type": "command", "command": "~/.claude/statusline.sh"},
  "apiKeyHelper": "/home/elsewhere/key.sh",
  "autoMemoryDirectory": "~/notes/mem",
  "hooks": {
    "PostToolUse": [{"matcher": "Edit", "hooks": [{"type": "command", "command": "npx prettier --write"}]}],
    "SessionStart": [{"hooks": [{"type": "command", "command": "bash ~/.claude/start.sh"}]}]
  }
}`)
	write(filepath.Join(proj, ".claude", "settings.json"), `{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "\"$CLAUDE_PROJECT_DIR\"/tools/stop.sh"}]}]}}`)
	write(filepath.Join(home, ".claude", "settings.local.json"), `{not json`)
	r := Scan(Options{Home: home, ProjectRoot: proj})
	var got []string
	for _, e := range r.Entries {
		got = append(got, e.Pattern+" <- "+e.By)
	}
	for _, want := range []string{
		"~/.claude/statusline.sh <- ~/.claude/settings.json statusLine.command",
		"/home/elsewhere/key.sh <- ~/.claude/settings.json apiKeyHelper",
		"~/.claude/start.sh <- ~/.claude/settings.json hooks.SessionStart[0].hooks[0].command",
		"~/notes/mem <- ~/.claude/settings.json autoMemoryDirectory",
		"~/p/tools/stop.sh <- ~/p/.claude/settings.json hooks.Stop[0].hooks[0].command",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(got, "\n"))
		}
	}
	if len(got) != 5 {
		t.Errorf("%d entries, want 5:\n%s", len(got), strings.Join(got, "\n"))
	}
	if len(r.Uncovered) != 1 || !strings.Contains(r.Uncovered[0], "npx prettier") {
		t.Errorf("uncovered: %q", r.Uncovered)
	}
}
