package claudestate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestConfigDir: $CLAUDE_CONFIG_DIR names another state directory only
// when it is set, absolute and not ~/.claude itself (also through a
// link); a relative one is refused, since claude would use another
// directory in each working directory.
func TestConfigDir(t *testing.T) {
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".claude"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(home, ".claude"), filepath.Join(home, "cc")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ v, want, err string }{
		{"", "", ""},
		{"  ", "", ""},
		{home + "/.claude-work/", home + "/.claude-work", ""},
		{" " + home + "/.claude-work ", home + "/.claude-work", ""},
		{home + "/.claude", "", ""},
		{home + "/./.claude/", "", ""},
		{home + "/cc", "", ""},
		{"/srv/claude", "/srv/claude", ""},
		{".claude-work", "", "not an absolute path"},
		{"~/.claude-work", "", "not an absolute path"},
	} {
		got, err := ConfigDir(tc.v, home, filepath.EvalSymlinks)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: got %q, %v; want %q, %q", tc.v, got, err, tc.want, tc.err)
		}
	}
	if got := ClaudeJSON("/home/u", ""); got != "/home/u/.claude.json" {
		t.Errorf("ClaudeJSON default: %s", got)
	}
	if got := ClaudeJSON("/home/u", "/home/u/cw"); got != "/home/u/cw/.claude.json" {
		t.Errorf("ClaudeJSON moved: %s", got)
	}
}

// TestMoved: every pattern of the policy beneath ~/.claude is named again
// in the moved directory, a directory's trailing "/" kept; others are not.
func TestMoved(t *testing.T) {
	pats := []string{"~/.bashrc", "~/.claude/settings.json", "~/.claude/hooks/", "~/.claude", "~/.claude/", "~/.claude.json", ".claude/settings.json"}
	var got []string
	for _, e := range Moved(pats, "/home/u", "/home/u/.config/claude") {
		got = append(got, e.Pattern+" <- "+e.By)
	}
	want := []string{
		"~/.config/claude/settings.json <- $CLAUDE_CONFIG_DIR in place of ~/.claude/settings.json",
		"~/.config/claude/hooks/ <- $CLAUDE_CONFIG_DIR in place of ~/.claude/hooks/",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := Moved(pats, "/home/u", ""); got != nil {
		t.Errorf("no directory moved: %v", got)
	}
}

// TestScanConfigDir: with the state moved, the moved directory's settings
// scripts, projects, shell snapshots and teams are found as ~/.claude's
// are, and ~/.claude's still are; the auto memory of the run's project is
// the moved directory's.
func TestScanConfigDir(t *testing.T) {
	home := t.TempDir()
	proj := filepath.Join(home, "p")
	cw := filepath.Join(home, ".claude-work")
	write := func(path, data string) { t.Helper(); writeFile(t, path, data) }
	write(filepath.Join(cw, "settings.json"), `{"statusLine": {"type": "command", "command": "~/.claude-work/status.sh"}}`)
	write(filepath.Join(home, ".claude", "settings.json"), `{"statusLine": {"type": "command", "command": "~/.claude/status.sh"}}`)
	write(filepath.Join(cw, "shell-snapshots", "snapshot-bash-1-abc.sh"), "true\n")
	write(filepath.Join(cw, "teams", "t", "inboxes", "a.json"), "[]\n")
	o := Options{Home: home, ProjectRoot: proj, WorkDir: proj, ConfigDir: cw}
	r := Scan(o)
	var got []string
	for _, e := range r.Entries {
		got = append(got, e.Pattern+" <- "+e.By+" except "+strings.Join(e.Except, ","))
	}
	own := Sanitize(proj)
	for _, want := range []string{
		"~/.claude-work/status.sh <- ~/.claude-work/settings.json statusLine.command except ",
		"~/.claude/status.sh <- ~/.claude/settings.json statusLine.command except ",
		"~/.claude/projects <- " + ProjectsBy + " except " + filepath.Join(home, ".claude", "projects", own),
		"~/.claude-work/projects <- " + ProjectsBy + " except " + filepath.Join(cw, "projects", own),
		"~/.claude-work/projects/" + own + "/memory <- auto memory of " + proj + " except ",
		"~/.claude-work/shell-snapshots/snapshot-bash-1-abc.sh <- " + SnapshotBy + " except ",
		"~/.claude-work/teams/t <- " + TeamBy + " except ",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(got, "\n"))
		}
	}
	if m := o.OwnMemory(); m != filepath.Join(cw, "projects", own, "memory") {
		t.Errorf("OwnMemory: %s", m)
	}
	if p := o.OwnProjects(); !slices.Equal(p, []string{filepath.Join(home, ".claude", "projects", own), filepath.Join(cw, "projects", own)}) {
		t.Errorf("OwnProjects: %v", p)
	}
}
