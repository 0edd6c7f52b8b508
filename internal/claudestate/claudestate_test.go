package claudestate

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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

func TestSanitize(t *testing.T) {
	if got := Sanitize("/home/u/my.proj_1"); got != "-home-u-my-proj-1" {
		t.Errorf("got %q", got)
	}
}

// TestScan: the user's and the project's settings name scripts, which are
// listed with what names them; commands that are no file are said.
func TestScan(t *testing.T) {
	home := t.TempDir()
	proj := filepath.Join(home, "p")
	write := func(path, data string) { t.Helper(); writeFile(t, path, data) }
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
	if err := os.MkdirAll(filepath.Join(home, ".claude", "projects", "-old-project"), 0o700); err != nil {
		t.Fatal(err)
	}
	r := Scan(Options{Home: home, ProjectRoot: proj, WorkDir: proj, EnvMemory: "/srv/mem/", EnvRemoteMemory: "/srv/remote"})
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
		"~/.claude/projects/" + Sanitize(proj) + "/memory <- auto memory of " + proj,
		"~/.claude/projects <- " + ProjectsBy,
		"/srv/mem <- $CLAUDE_COWORK_MEMORY_PATH_OVERRIDE",
		"/srv/remote/agent-memory <- $CLAUDE_CODE_REMOTE_MEMORY_DIR",
		"/srv/remote/projects <- $CLAUDE_CODE_REMOTE_MEMORY_DIR",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(got, "\n"))
		}
	}
	// One rule covers every other project, present (-old-project) or not,
	// with the run's own directory carved out: its memory has a rule.
	for _, e := range r.Entries {
		if strings.Contains(e.Pattern, "-old-project") {
			t.Errorf("a rule per existing project: %v", e)
		}
		if e.By == ProjectsBy && !slices.Equal(e.Except, []string{filepath.Join(home, ".claude", "projects", Sanitize(proj))}) {
			t.Errorf("the projects rule excepts %q", e.Except)
		}
	}
	if len(r.Uncovered) != 1 || !strings.Contains(r.Uncovered[0], "npx prettier") {
		t.Errorf("uncovered: %q", r.Uncovered)
	}
}

// TestShellSnapshots: the snapshots of the claude sessions running at the
// start are each a rule, the newest first and at most MaxSnapshots; other
// files, directories and links there are not.
func TestShellSnapshots(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, ".claude", "shell-snapshots")
	if err := os.MkdirAll(filepath.Join(dir, "snapshot-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range MaxSnapshots + 2 {
		writeAged(t, filepath.Join(dir, fmt.Sprintf("snapshot-bash-%d-x.sh", i)), "alias ll='ls -l'\n", time.Duration(i)*time.Minute)
	}
	writeAged(t, filepath.Join(dir, "notes.txt"), "x\n", 0)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "snapshot-link.sh")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range Scan(Options{Home: home}).Entries {
		if e.By == SnapshotBy {
			got = append(got, e.Pattern)
		}
	}
	if len(got) != MaxSnapshots || got[0] != "~/.claude/shell-snapshots/snapshot-bash-0-x.sh" ||
		got[MaxSnapshots-1] != fmt.Sprintf("~/.claude/shell-snapshots/snapshot-bash-%d-x.sh", MaxSnapshots-1) {
		t.Errorf("snapshot rules (%d): %q", len(got), got)
	}
	for _, p := range got {
		if strings.Contains(p, "link") || strings.Contains(p, "dir") || strings.Contains(p, "notes") {
			t.Errorf("%s is no snapshot", p)
		}
	}
}

// TestAgentTeams: the agent teams present at the start are each a rule,
// the newest first (by the directory or its inboxes) and at most
// MaxTeams; files and links there are not.
func TestAgentTeams(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, ".claude", "teams")
	age := func(p string, d time.Duration) {
		t.Helper()
		at := time.Now().Add(-d)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	for i := range MaxTeams + 2 {
		writeAged(t, filepath.Join(dir, fmt.Sprintf("team-%d", i), "config.json"), "{}\n", 0)
		age(filepath.Join(dir, fmt.Sprintf("team-%d", i)), time.Duration(i+1)*time.Minute)
	}
	// The oldest directory, but a message came to its inboxes just now.
	old := filepath.Join(dir, fmt.Sprintf("team-%d", MaxTeams+1))
	writeAged(t, filepath.Join(old, "inboxes", "team-lead.json"), "[]\n", 0)
	age(old, time.Hour)
	age(filepath.Join(old, "inboxes"), 0)
	writeAged(t, filepath.Join(dir, "notes.txt"), "x\n", 0)
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "team-link")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range Scan(Options{Home: home}).Entries {
		if e.By == TeamBy {
			got = append(got, e.Pattern)
		}
	}
	want := fmt.Sprintf("~/.claude/teams/team-%d", MaxTeams+1)
	if len(got) != MaxTeams || got[0] != want || got[1] != "~/.claude/teams/team-0" ||
		got[MaxTeams-1] != fmt.Sprintf("~/.claude/teams/team-%d", MaxTeams-2) {
		t.Errorf("team rules (%d): %q", len(got), got)
	}
	for _, p := range got {
		if strings.Contains(p, "link") || strings.Contains(p, "notes") {
			t.Errorf("%s is no team", p)
		}
	}

	// Marked deleted (claude removes it at its start, inside too), and
	// idle past Claude Code's cleanup period: no teammate reads them.
	home = t.TempDir()
	dir = filepath.Join(home, ".claude", "teams")
	writeAged(t, filepath.Join(dir, "gone.deleted-0b5e7f2c-1111-4a4a-9c9c-222233334444", "inboxes", "a.json"), "[]\n", 0)
	writeAged(t, filepath.Join(dir, "idle", "inboxes", "a.json"), "[]\n", 0)
	age(filepath.Join(dir, "idle", "inboxes"), TeamIdle+time.Hour)
	age(filepath.Join(dir, "idle"), TeamIdle+time.Hour)
	writeAged(t, filepath.Join(dir, "live", "inboxes", "a.json"), "[]\n", 0)
	got = nil
	for _, e := range Scan(Options{Home: home}).Entries {
		if e.By == TeamBy {
			got = append(got, e.Pattern)
		}
	}
	if !slices.Equal(got, []string{"~/.claude/teams/live"}) {
		t.Errorf("team rules: %q, want only the live team", got)
	}
}

// TestSeedMemory: the sandbox's auto memory starts with the user's notes,
// gets a note the user changed since, and keeps one the sandbox changed
// since; subdirectories, links and large files are not copied.
func TestSeedMemory(t *testing.T) {
	own, sb := filepath.Join(t.TempDir(), "memory"), filepath.Join(t.TempDir(), "claude-memory", "-p")
	write := func(p, s string, age time.Duration) { t.Helper(); writeAged(t, p, s, age) }
	if n, err := SeedMemory(own, sb); err != nil || n != 0 {
		t.Fatalf("no memory yet: %d, %v", n, err)
	}
	if _, err := os.Stat(sb); err != nil {
		t.Fatalf("the sandbox's directory was not made: %v", err)
	}
	write(filepath.Join(own, "MEMORY.md"), "user 1\n", time.Hour)
	write(filepath.Join(own, "build.md"), "build\n", time.Hour)
	write(filepath.Join(own, "sub", "x.md"), "sub\n", time.Hour)
	write(filepath.Join(own, "big.md"), strings.Repeat("x", maxSeedSize+1), time.Hour)
	if err := os.Symlink("/etc/passwd", filepath.Join(own, "link.md")); err != nil {
		t.Fatal(err)
	}
	if n, err := SeedMemory(own, sb); err != nil || n != 2 {
		t.Fatalf("first seed: %d, %v", n, err)
	}
	for _, name := range []string{"sub", "big.md", "link.md"} {
		if _, err := os.Lstat(filepath.Join(sb, name)); err == nil {
			t.Errorf("%s was copied", name)
		}
	}
	// The sandbox notes in build.md; the user changes MEMORY.md outside.
	write(filepath.Join(sb, "build.md"), "build, noted inside\n", 0)
	write(filepath.Join(own, "MEMORY.md"), "user 2\n", time.Minute)
	if n, err := SeedMemory(own, sb); err != nil || n != 1 {
		t.Fatalf("second seed: %d, %v", n, err)
	}
	for name, want := range map[string]string{"MEMORY.md": "user 2\n", "build.md": "build, noted inside\n"} {
		if got, _ := os.ReadFile(filepath.Join(sb, name)); string(got) != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	// A link a sandbox put in place of its directory is not followed.
	elsewhere := t.TempDir()
	if err := os.RemoveAll(sb); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, sb); err != nil {
		t.Fatal(err)
	}
	if n, err := SeedMemory(own, sb); err == nil || n != 0 {
		t.Errorf("seeded through a link: %d, %v", n, err)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("wrote where the link points: %v", ents)
	}
}

// TestSeedAgentMemory: the sandboxes' subagent memory starts with each
// agent's notes (RemoteMemoryEnv's layout, agent-memory/<agent>/), keeps
// one a sandbox changed since, and follows no link: neither an agent's
// directory that is a link outside nor one a sandbox put in place of its
// own directory.
func TestSeedAgentMemory(t *testing.T) {
	real, root := filepath.Join(t.TempDir(), "agent-memory"), filepath.Join(t.TempDir(), "claude-agent-memory")
	write := func(p, s string, age time.Duration) { t.Helper(); writeAged(t, p, s, age) }
	if n, err := SeedAgentMemory(real, root); err != nil || n != 0 {
		t.Fatalf("no agent memory yet: %d, %v", n, err)
	}
	write(filepath.Join(real, "reviewer", "MEMORY.md"), "- reviewer's note\n", time.Hour)
	write(filepath.Join(real, "reviewer", "style.md"), "style\n", time.Hour)
	write(filepath.Join(real, "tester", "MEMORY.md"), "- tester's note\n", time.Hour)
	write(filepath.Join(real, "stray.md"), "not an agent\n", time.Hour)
	outside := t.TempDir()
	write(filepath.Join(outside, "MEMORY.md"), "elsewhere\n", time.Hour)
	if err := os.Symlink(outside, filepath.Join(real, "linked")); err != nil {
		t.Fatal(err)
	}
	if n, err := SeedAgentMemory(real, root); err != nil || n != 3 {
		t.Fatalf("first seed: %d, %v", n, err)
	}
	mem := filepath.Join(root, "agent-memory")
	for name, want := range map[string]string{"reviewer/MEMORY.md": "- reviewer's note\n", "reviewer/style.md": "style\n",
		"tester/MEMORY.md": "- tester's note\n"} {
		if got, _ := os.ReadFile(filepath.Join(mem, name)); string(got) != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"stray.md", "linked"} {
		if _, err := os.Lstat(filepath.Join(mem, name)); err == nil {
			t.Errorf("%s was copied", name)
		}
	}
	// A subagent inside notes; the next seed keeps its note.
	write(filepath.Join(mem, "tester", "MEMORY.md"), "- noted inside\n", 0)
	if n, err := SeedAgentMemory(real, root); err != nil || n != 0 {
		t.Fatalf("second seed: %d, %v", n, err)
	}
	if got, _ := os.ReadFile(filepath.Join(mem, "tester", "MEMORY.md")); string(got) != "- noted inside\n" {
		t.Errorf("the sandbox's note was overwritten: %q", got)
	}
	// A link in place of the sandboxes' directory, or of one agent's.
	elsewhere := t.TempDir()
	if err := os.RemoveAll(filepath.Join(mem, "reviewer")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(mem, "reviewer")); err != nil {
		t.Fatal(err)
	}
	if _, err := SeedAgentMemory(real, root); err == nil {
		t.Errorf("seeded through an agent's link")
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, root); err != nil {
		t.Fatal(err)
	}
	if n, err := SeedAgentMemory(real, root); err == nil || n != 0 {
		t.Errorf("seeded through a link: %d, %v", n, err)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("wrote where the link points: %v", ents)
	}
}

// writeAged writes s to p (its directory made) with times age ago.
func writeAged(t *testing.T, p, s string, age time.Duration) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-age)
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
}
