//go:build linux

package run

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestClaudeConfigDir: Claude Code's state moved by $CLAUDE_CONFIG_DIR is
// taken when aigate can keep it as it keeps ~/.claude (beneath the home,
// outside everything the sandbox may write), and refused, naming why and
// what to do, when not: a sandbox could otherwise replace the settings
// and hooks a claude outside runs from there.
func TestClaudeConfigDir(t *testing.T) {
	home := homeOutsideTemp(t)
	proj := filepath.Join(home, "src", "p")
	paths := &config.Paths{ProjectRoot: proj, WorkDir: proj}
	pol := &policy.Policy{Writable: []policy.PathRule{{Pattern: "~/.config/tool/"}}}
	for link, to := range map[string]string{"cc-link": filepath.Join(home, ".config", "claude"), "cc-out": "/var/tmp", "cc-proj": proj} {
		if err := os.MkdirAll(to, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, filepath.Join(home, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ v, want, err string }{
		{"", "", ""},
		{filepath.Join(home, ".claude"), "", ""},
		{filepath.Join(home, ".claude-work"), filepath.Join(home, ".claude-work"), ""},
		{filepath.Join(home, ".config", "claude"), filepath.Join(home, ".config", "claude"), ""},
		{"relative/dir", "", "not an absolute path"},
		{filepath.Join(proj, ".cc"), "", "beneath " + proj + ", which the sandbox may write"},
		{filepath.Join(home, ".claude", "work"), "", "beneath " + filepath.Join(home, ".claude") + ", which"},
		{filepath.Join(home, ".config", "tool", "cc"), "", "beneath " + filepath.Join(home, ".config", "tool") + ", which"},
		{filepath.Join(home, ".cache", "aigate", "cc"), "", "which the sandbox may write"},
		{filepath.Join(home, "tmp", "cc"), "", "beneath " + filepath.Join(home, "tmp") + ", which"},
		{"/srv/claude", "", "not beneath your home"},
		{home, "", "not beneath your home"},
		// A link is taken where it leads.
		{filepath.Join(home, "cc-link"), filepath.Join(home, ".config", "claude"), ""},
		{filepath.Join(home, "cc-out"), "", "leads to /var/tmp, not beneath your home"},
		{filepath.Join(home, "cc-proj"), "", "beneath " + proj + ", which"},
	} {
		env := map[string]string{"TMPDIR": filepath.Join(home, "tmp"), claudestate.ConfigDirEnv: tc.v}
		getenv := func(k string) string { return env[k] }
		got, err := claudeConfigDir(baseLandlockOptions(pol, "fanotify", home, paths, getenv), getenv)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: got %q, %v; want %q, %q", tc.v, got, err, tc.want, tc.err)
		}
		if err != nil && !strings.Contains(err.Error(), "unset "+claudestate.ConfigDirEnv) && !strings.Contains(err.Error(), "absolute path (e.g.") {
			t.Errorf("%q: the refusal says nothing of what to do: %v", tc.v, err)
		}
	}
}

// TestLandlockClaudeConfigDir: the moved state directory gets what
// ~/.claude gets in the domain: its own entries fixed, its projects,
// agent memory, session scripts and IDE locks sealed but for the run's
// own project, its usual directories made first. Without the variable
// nothing changes.
func TestLandlockClaudeConfigDir(t *testing.T) {
	home := homeOutsideTemp(t)
	proj := filepath.Join(home, "p")
	cw := filepath.Join(home, ".claude-work")
	paths := &config.Paths{ProjectRoot: proj, WorkDir: proj}
	env := map[string]string{claudestate.ConfigDirEnv: cw}
	opts := landlockOptions(&policy.Policy{}, "fanotify", home, paths, func(k string) string { return env[k] })
	for _, f := range []string{".claude", ".claude-work"} {
		if !slices.Contains(opts.Fixed, f) {
			t.Errorf("fixed %v lacks %s", opts.Fixed, f)
		}
	}
	for _, s := range []string{".claude-work/projects", ".claude-work/agent-memory", ".claude-work/session-env", ".claude-work/ide", ".claude/projects"} {
		if !slices.Contains(opts.Sealed, s) {
			t.Errorf("sealed %v lacks %s", opts.Sealed, s)
		}
	}
	for _, c := range []string{".claude-work", ".claude-work/hooks", ".claude-work/plugins/cache", ".claude-work/jobs", ".claude/hooks"} {
		if !slices.Contains(opts.Create, c) {
			t.Errorf("create %v lacks %s", opts.Create, c)
		}
	}
	if own := filepath.Join(cw, "projects", claudestate.Sanitize(proj)); !slices.Contains(opts.Open, own) {
		t.Errorf("open %v lacks %s", opts.Open, own)
	}
	if err := landlock.CreateMissing(opts); err != nil {
		t.Fatal(err)
	}
	rs, protected := landlock.Plan(opts, landlock.OSDirs{})
	if !protected {
		t.Fatal("home not protected")
	}
	// Claude Code writes its files there, as in ~/.claude; nothing in
	// the state directory itself can be renamed over.
	if !writableAt(rs, filepath.Join(cw, ".claude.json")) || !writableAt(rs, filepath.Join(cw, "hooks", "x.sh")) {
		t.Errorf("the moved state is not writable: %+v", rs.Rules)
	}
	for _, r := range rs.Rules {
		if r.Path == cw && r.Access&(landlock.AccessRemoveFile|landlock.AccessRefer) != 0 {
			t.Errorf("%s: entries may be removed or renamed in: %#x", cw, r.Access)
		}
	}
	plain := landlockOptions(&policy.Policy{}, "fanotify", home, paths, func(string) string { return "" })
	if slices.ContainsFunc(append(append(plain.Fixed, plain.Sealed...), plain.Create...), func(s string) bool { return strings.HasPrefix(s, ".claude-work") }) {
		t.Errorf("without the variable: %+v", plain)
	}
}

// TestClaudeRulesConfigDir: every deny_write rule of the policy beneath
// ~/.claude is a rule of the run in the moved state directory too, and
// the moved directory's settings scripts are found; run names the
// directory once, not each rule.
func TestClaudeRulesConfigDir(t *testing.T) {
	home := homeOutsideTemp(t)
	proj := filepath.Join(home, "p")
	cw := filepath.Join(home, ".claude-work")
	if err := os.MkdirAll(cw, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cw, "settings.json"), []byte(`{"statusLine": {"command": "~/bin2/status.sh"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, _ := policy.Merge(nil, nil, false)
	c, err := policy.Compile(pol, policy.Env{Home: home, ProjectRoot: proj})
	if err != nil {
		t.Fatal(err)
	}
	l := &config.Loaded{Paths: &config.Paths{ProjectRoot: proj, WorkDir: proj, User: &config.User{Home: home, UID: os.Getuid(), GID: os.Getgid()}}}
	rules, _ := claudeRules(l, pol, c, home, cw, "", "", false)
	var got []string
	for _, r := range rules {
		got = append(got, r.Pattern)
	}
	for _, want := range []string{"~/.claude-work/settings.json", "~/.claude-work/hooks/", "~/.claude-work/.credentials.json",
		"~/.claude-work/plugins/cache/", "~/.claude-work/ide/", "~/bin2/status.sh", "~/.claude-work/projects"} {
		if !slices.Contains(got, want) {
			t.Errorf("run rules lack %s: %v", want, got)
		}
	}
	line := describeRunRules(rules)
	if strings.Contains(line, "~/.claude-work/hooks/") || !strings.Contains(line, "~/bin2/status.sh") {
		t.Errorf("run's line: %s", line)
	}
	if d := describeClaudeDir(cw, home); !strings.Contains(d, "~/.claude-work") {
		t.Errorf("run does not name the directory: %s", d)
	}
}
