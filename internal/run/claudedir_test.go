//go:build linux

package run

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/api"
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
	rules, _ := claudeRules(l, pol, c, home, cw, "", "", "", false)
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

// TestClaudeSecureDir: the login moved by $CLAUDE_SECURESTORAGE_CONFIG_DIR
// is taken where aigate can keep it as it keeps ~/.claude's (beneath the
// home, outside everything the sandbox may write, including ~/.claude's
// and the moved state directory's subdirectories), and refused, naming
// why and what to do, where not: a sandbox could otherwise plant the token
// the next claude outside sends its requests with. The directories that
// hold the login anyway (~/.claude, $CLAUDE_CONFIG_DIR's) add nothing.
func TestClaudeSecureDir(t *testing.T) {
	home := homeOutsideTemp(t)
	proj := filepath.Join(home, "src", "p")
	cw := filepath.Join(home, ".claude-work")
	paths := &config.Paths{ProjectRoot: proj, WorkDir: proj}
	pol := &policy.Policy{Writable: []policy.PathRule{{Pattern: "~/.config/tool/"}}}
	for link, to := range map[string]string{"sec-link": filepath.Join(home, ".config", "login"), "sec-out": "/var/tmp",
		"sec-proj": proj, "sec-claude": filepath.Join(home, ".claude")} {
		if err := os.MkdirAll(to, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, filepath.Join(home, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ config, v, want, err string }{
		{"", "", "", ""},
		{"", filepath.Join(home, ".claude"), "", ""},
		{"", filepath.Join(home, "sec-claude"), "", ""},
		{cw, cw, "", ""},
		{"", cw, cw, ""},
		{"", filepath.Join(home, ".claude-login"), filepath.Join(home, ".claude-login"), ""},
		{"", "relative/dir", "", "not an absolute path"},
		{"", " " + filepath.Join(home, ".claude-login"), "", "not an absolute path"},
		{"", filepath.Join(proj, ".sec"), "", "beneath " + proj + ", which the sandbox may write"},
		{"", filepath.Join(home, ".claude", "sec"), "", "beneath " + filepath.Join(home, ".claude") + ", which"},
		{cw, filepath.Join(cw, "sec"), "", "beneath " + cw + ", which"},
		{"", filepath.Join(home, ".config", "tool", "sec"), "", "beneath " + filepath.Join(home, ".config", "tool") + ", which"},
		{"", filepath.Join(home, ".cache", "aigate", "sec"), "", "which the sandbox may write"},
		{"", filepath.Join(home, "tmp", "sec"), "", "beneath " + filepath.Join(home, "tmp") + ", which"},
		{"", "/srv/claude", "", "not beneath your home"},
		{"", home, "", "not beneath your home"},
		// A link is taken where it leads.
		{"", filepath.Join(home, "sec-link"), filepath.Join(home, ".config", "login"), ""},
		{"", filepath.Join(home, "sec-out"), "", "leads to /var/tmp, not beneath your home"},
		{"", filepath.Join(home, "sec-proj"), "", "beneath " + proj + ", which"},
	} {
		env := map[string]string{"TMPDIR": filepath.Join(home, "tmp"), claudestate.ConfigDirEnv: tc.config, claudestate.SecureStorageEnv: tc.v}
		getenv := func(k string) string { return env[k] }
		_, got, err := claudeStateDirs(pol, home, paths, getenv)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q (config %q): got %q, %v; want %q, %q", tc.v, tc.config, got, err, tc.want, tc.err)
		}
		if err != nil && !strings.Contains(err.Error(), "unset "+claudestate.SecureStorageEnv) && !strings.Contains(err.Error(), "unset it") {
			t.Errorf("%q: the refusal says nothing of what to do: %v", tc.v, err)
		}
	}
}

// TestClaudeRulesSecureStorage: the login in the directory
// $CLAUDE_SECURESTORAGE_CONFIG_DIR names is a deny_write rule of the run,
// as ~/.claude's is by default, and run names it; a policy that lets the
// sandbox write ~/.claude's login (not deny_write) gets no rule there.
func TestClaudeRulesSecureStorage(t *testing.T) {
	home := homeOutsideTemp(t)
	proj := filepath.Join(home, "p")
	sec := filepath.Join(home, ".claude-login")
	l := &config.Loaded{Paths: &config.Paths{ProjectRoot: proj, WorkDir: proj, User: &config.User{Home: home, UID: os.Getuid(), GID: os.Getgid()}}}
	rulesOf := func(pol *policy.Policy) []api.RunRule {
		t.Helper()
		c, err := policy.Compile(pol, policy.Env{Home: home, ProjectRoot: proj})
		if err != nil {
			t.Fatal(err)
		}
		rules, _ := claudeRules(l, pol, c, home, "", sec, "", "", false)
		return rules
	}
	pol, _ := policy.Merge(nil, nil, false)
	rules := rulesOf(pol)
	i := slices.IndexFunc(rules, func(r api.RunRule) bool { return r.Pattern == "~/.claude-login/.credentials.json" })
	if i < 0 {
		t.Fatalf("run rules lack ~/.claude-login/.credentials.json: %+v", rules)
	}
	if want := "$" + claudestate.SecureStorageEnv + " in place of ~/.claude/.credentials.json"; rules[i].By != want {
		t.Errorf("the rule is by %q, want %q", rules[i].By, want)
	}
	if line := describeRunRules(rules); !strings.Contains(line, "~/.claude-login/.credentials.json ($"+claudestate.SecureStorageEnv) {
		t.Errorf("run's line does not name the login: %s", line)
	}

	// The user let the sandbox log in: not in its moved place either.
	var open policy.Policy
	for _, r := range pol.DenyWrite {
		if r.Pattern != "~/.claude/.credentials.json" {
			open.DenyWrite = append(open.DenyWrite, r)
		}
	}
	if len(open.DenyWrite) == len(pol.DenyWrite) {
		t.Fatalf("the defaults have no deny_write ~/.claude/.credentials.json: %+v", pol.DenyWrite)
	}
	if r := rulesOf(&open); slices.ContainsFunc(r, func(r api.RunRule) bool { return strings.Contains(r.Pattern, ".credentials.json") }) {
		t.Errorf("a rule for the login although the policy lets the sandbox write it: %+v", r)
	}
}
