//go:build linux

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/doctor"
	"github.com/aigate-dev/aigate/internal/egress"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/testutil/testcgroup"

	"github.com/creack/pty"
)

// statusBackend enforces nothing; like backend.Composite it says how each
// sandbox's egress is kept.
type statusBackend struct {
	mu    sync.Mutex
	added map[uint32]enforce.Sandbox
	ch    chan events.Event
	once  sync.Once
}

func (b *statusBackend) Name() string { return "fake" }
func (b *statusBackend) Add(_ context.Context, sb *enforce.Sandbox) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.added[sb.ID] = *sb
	return nil
}
func (b *statusBackend) Remove(id uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.added, id)
	return nil
}
func (b *statusBackend) Events() <-chan events.Event   { return b.ch }
func (b *statusBackend) Stats() (enforce.Stats, error) { return enforce.Stats{}, nil }
func (b *statusBackend) Close() error                  { b.once.Do(func() { close(b.ch) }); return nil }

// UnixSockets is what backend.Composite says with a fanotify file part.
func (b *statusBackend) UnixSockets() string { return loader.UnixSocketEnforcement() }
func (b *statusBackend) NetStatus(id uint32) (egress.Status, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.added[id]
	return egress.Status{Mode: egress.ModeProxy}, ok
}

// startStatusAgent runs a real agent with the fake backend on real cgroups.
func startStatusAgent(t *testing.T) (*statusBackend, string) {
	t.Helper()
	parent, dir := testcgroup.Parent(t, "aigate-cli-status-test")
	// Runs once the agent has closed, before Parent's kill-and-remove: a
	// sandbox the agent left behind makes this fail.
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove parent cgroup: %v", err)
		}
	})
	be := &statusBackend{added: map[uint32]enforce.Sandbox{}, ch: make(chan events.Event, 16)}
	a, err := agent.New(agent.Config{Backend: be, Socket: filepath.Join(t.TempDir(), "aigate.sock"), Parent: parent, Build: "test"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Serve(t, a.Serve, a.Close)
	return be, a.Socket()
}

func TestStatusShowsAgentSandboxes(t *testing.T) {
	be, sock := startStatusAgent(t)
	e := newSandboxEnv(t)
	ctx := context.Background()
	sess, err := api.NewClient(sock).CreateSandbox(ctx, api.CreateRequest{Home: e.home, ProjectRoot: e.proj, Command: []string{"claude", "--resume"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	be.mu.Lock()
	sb := be.added[sess.Sandbox.ID]
	be.mu.Unlock()
	for range 2 {
		be.ch <- events.Event{Kind: events.KindFile, Op: events.OpRead, CgroupID: sb.CgroupID, Path: e.proj + "/.env"}
	}

	var st Status
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := e.ok("status", "--json", "--socket", sock)
		st = Status{}
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if en := st.Enforcement; en != nil && len(en.Sandboxes) == 1 && en.Sandboxes[0].Events == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	en := st.Enforcement
	if en == nil || en.Agent == nil || en.Source != "agent" || en.Backend != "fake" || en.Agent.PID != os.Getpid() || en.Agent.Socket != sock {
		t.Fatalf("enforcement: %+v", en)
	}
	if en.Unix == "" || en.Unix != en.Agent.Unix {
		t.Errorf("unix %q, agent says %q", en.Unix, en.Agent.Unix)
	}
	if len(en.Sandboxes) != 1 {
		t.Fatalf("sandboxes: %+v", en.Sandboxes)
	}
	b := en.Sandboxes[0]
	if b.Name != sess.Sandbox.Name || b.DNS != "dns proxy" || b.Events != 2 || b.Owner != 0 || b.User != "root" ||
		strings.Join(b.Command, " ") != "claude --resume" || b.Backend != "fake" || time.Since(b.Started) > time.Minute {
		t.Errorf("sandbox: %+v", b)
	}

	out := e.ok("status", "--socket", sock)
	for _, want := range []string{
		"  backend       fake (the running agent's)\n",
		"not pinned: its sandboxes are ended if it stops",
		"Sandboxes (1)",
		"  NAME",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	var row string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "  "+sess.Sandbox.Name+" ") {
			row = line
		}
	}
	if f := strings.Fields(row); len(f) < 10 || f[1] != "root" || f[4] != "fake" || f[5] != "enforce" || f[6] != "dns" || f[7] != "proxy" || f[8] != "2" || f[9] != "claude" {
		t.Errorf("sandbox row %q", row)
	}
}

func TestStatusWithoutAgent(t *testing.T) {
	e := newSandboxEnv(t)
	sock := filepath.Join(t.TempDir(), "none.sock")
	out := e.ok("status", "--json", "--socket", sock)
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	en := st.Enforcement
	if en == nil || en.Agent != nil || en.AgentMessage != noAgent || en.Source != "kernel" || en.Sandboxes == nil || len(en.Sandboxes) != 0 {
		t.Fatalf("enforcement: %+v", en)
	}
	// The fake kernel tree has BPF LSM active and no probes: lsm, unproven.
	if en.Backend != "lsm" {
		t.Errorf("backend %q, want what doctor picks", en.Backend)
	}
	out = e.ok("status", "--socket", sock)
	for _, want := range []string{
		"  agent         no agent running (aigate run starts one for its lifetime when run with sudo)\n",
		"  backend       lsm (what aigate run would use now, for backend: auto)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Sandboxes (") {
		t.Errorf("no agent, yet a sandbox list:\n%s", out)
	}
}

// TestStatusClaudeScripts: status lists the scripts the user's Claude
// Code settings run as deny_write of each run, and says which commands it
// cannot protect.
func TestStatusClaudeScripts(t *testing.T) {
	e := newSandboxEnv(t)
	e.write(filepath.Join(e.home, ".claude", "settings.json"),
		`{"statusLine": {"command": "~/.claude/statusline.sh"}, "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "npx stop-hook"}]}]}}`)
	sock := filepath.Join(t.TempDir(), "none.sock")
	var st Status
	if err := json.Unmarshal([]byte(e.ok("status", "--json", "--socket", sock)), &st); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range st.DenyWrite {
		found = found || (r.Value == "~/.claude/statusline.sh" && r.File == "each run: ~/.claude/settings.json statusLine.command")
	}
	if !found {
		t.Errorf("deny_write lacks the status line script: %+v", st.DenyWrite)
	}
	// Every other project's auto memory, by one rule that names what
	// stays writable.
	projects := false
	for _, r := range st.DenyWrite {
		projects = projects || (r.Value == "~/.claude/projects" && strings.Contains(r.File, "each run: auto memory of every other project; writable: "+
			filepath.Join(e.home, ".claude", "projects")+"/"))
	}
	if !projects {
		t.Errorf("deny_write lacks ~/.claude/projects with its exception: %+v", st.DenyWrite)
	}
	if len(st.ClaudeNotProtected) != 1 || !strings.Contains(st.ClaudeNotProtected[0], "npx stop-hook") {
		t.Errorf("claude_not_protected: %q", st.ClaudeNotProtected)
	}
	out := e.ok("status", "--socket", sock)
	if !strings.Contains(out, "~/.claude/statusline.sh") || !strings.Contains(out, "not protected by aigate run") {
		t.Errorf("status does not show them:\n%s", out)
	}
}

// TestStatusGitDirs: status lists the files of a submodule's git
// directory and its .git file as deny_write of each run (run.GitRules),
// and says which hooks directory it leaves to the project.
func TestStatusGitDirs(t *testing.T) {
	e := newSandboxEnv(t)
	e.write(filepath.Join(e.proj, ".git", "HEAD"), "ref: refs/heads/main\n")
	e.write(filepath.Join(e.proj, ".git", "config"), "[core]\n\thooksPath = .githooks\n")
	e.write(filepath.Join(e.proj, ".git", "modules", "sub", "HEAD"), "x\n")
	e.write(filepath.Join(e.proj, "sub", ".git"), "gitdir: ../.git/modules/sub\n")
	sock := filepath.Join(t.TempDir(), "none.sock")
	var st Status
	if err := json.Unmarshal([]byte(e.ok("status", "--json", "--socket", sock)), &st); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(e.proj, ".git", "modules", "sub")
	want := map[string]string{
		mod + "/config":                      "each run: " + mod + " (submodule sub)",
		mod + "/hooks/":                      "each run: " + mod + " (submodule sub)",
		filepath.Join(e.proj, "sub", ".git"): "each run: " + filepath.Join(e.proj, "sub", ".git") + " (points at " + mod + ")",
	}
	for _, r := range st.DenyWrite {
		if w, ok := want[r.Value]; ok && r.File == w {
			delete(want, r.Value)
		}
		if r.Value == filepath.Join(e.proj, ".git", "config") || r.Value == filepath.Join(e.proj, ".git", "commondir") {
			t.Errorf("a default entry repeated for each run: %+v", r)
		}
	}
	if len(want) != 0 {
		t.Errorf("deny_write lacks %v: %+v", want, st.DenyWrite)
	}
	if len(st.GitNotProtected) != 1 || !strings.Contains(st.GitNotProtected[0], ".githooks is in the project") {
		t.Errorf("git_not_protected: %q", st.GitNotProtected)
	}
	out := e.ok("status", "--socket", sock)
	if !strings.Contains(out, mod+"/config") || !strings.Contains(out, "not protected by aigate run") {
		t.Errorf("status does not show them:\n%s", out)
	}
}

// TestStatusOutsideRules: status lists, as rules of each run, the user's
// sockets in their directories in /tmp (deny_write) and their terminals
// (deny_read), which run adds for what lies outside the project and home.
func TestStatusOutsideRules(t *testing.T) {
	e := newSandboxEnv(t)
	dir, err := os.MkdirTemp("/tmp", "aigate-status-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer tty.Close()
	var st Status
	if err := json.Unmarshal([]byte(e.ok("status", "--json", "--socket", filepath.Join(t.TempDir(), "none.sock"))), &st); err != nil {
		t.Fatal(err)
	}
	has := func(rules []StatusRule, value, by string) bool {
		for _, r := range rules {
			if r.Value == value && r.File == "each run: "+by {
				return true
			}
		}
		return false
	}
	if !has(st.DenyWrite, filepath.Join(dir, "agent.sock"), "a socket of your services outside the sandbox") {
		t.Errorf("deny_write lacks the user's socket: %+v", st.DenyWrite)
	}
	if !has(st.DenyRead, tty.Name(), "a terminal of yours") {
		t.Errorf("deny_read lacks the user's terminal %s: %+v", tty.Name(), st.DenyRead)
	}
}

// TestStatusEnvRules: status lists, as rules of each run, the policy's
// rules named again where the user's environment moves the files they
// protect ($XDG_CONFIG_HOME, $XDG_DATA_HOME, $GIT_CONFIG_GLOBAL,
// $AWS_SHARED_CREDENTIALS_FILE), each saying which rule it follows, in
// the list of the rule it follows (an except_read too) and right under
// that rule.
func TestStatusEnvRules(t *testing.T) {
	e := newSandboxEnv(t)
	e.write(filepath.Join(e.home, ".aigate", "config.yaml"), strings.Replace(string(policy.DefaultYAML()), "except_read:\n", "except_read:\n  - ~/.config/sometool/\n", 1))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(e.home, "cfg"))
	t.Setenv("XDG_DATA_HOME", "/srv/xdg-data")
	t.Setenv("GIT_CONFIG_GLOBAL", "/srv/env-dotfiles/gitconfig")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/srv/env-data/creds")
	sock := filepath.Join(t.TempDir(), "none.sock")
	var st Status
	if err := json.Unmarshal([]byte(e.ok("status", "--json", "--socket", sock)), &st); err != nil {
		t.Fatal(err)
	}
	under := func(rules []StatusRule, value, by, rule string) bool {
		i := slices.IndexFunc(rules, func(r StatusRule) bool { return r.Value == value && r.File == "each run: "+by })
		if i < 0 {
			return false
		}
		// Above it, only the rule it follows and others following it.
		for j := i - 1; j >= 0; j-- {
			if rules[j].Value == rule {
				return true
			}
			if followedRule(rules[j]) != rule {
				return false
			}
		}
		return false
	}
	for _, c := range []struct {
		list        string
		rules       []StatusRule
		value, rule string
		env         string
	}{
		{"deny_write", st.DenyWrite, "~/cfg/git/", "~/.config/git/", "XDG_CONFIG_HOME"},
		{"deny_read", st.DenyRead, "~/cfg/gh/", "~/.config/gh/", "XDG_CONFIG_HOME"},
		{"except_read", st.ExceptRead, "~/cfg/sometool/", "~/.config/sometool/", "XDG_CONFIG_HOME"},
		{"deny_write", st.DenyWrite, "/srv/xdg-data/applications/", "~/.local/share/applications/", "XDG_DATA_HOME"},
		{"deny_read", st.DenyRead, "/srv/xdg-data/keyrings/", "~/.local/share/keyrings/", "XDG_DATA_HOME"},
		{"deny_write", st.DenyWrite, "/srv/env-dotfiles/gitconfig", "~/.gitconfig", "GIT_CONFIG_GLOBAL"},
		{"deny_read", st.DenyRead, "/srv/env-data/creds", "~/.aws/", "AWS_SHARED_CREDENTIALS_FILE"},
	} {
		if !under(c.rules, c.value, "$"+c.env+" in place of "+c.rule, c.rule) {
			t.Errorf("%s lacks %s under %s: %+v", c.list, c.value, c.rule, c.rules)
		}
	}
	out := e.ok("status", "--socket", sock)
	if !strings.Contains(out, "$XDG_CONFIG_HOME in place of ~/.config/git/") {
		t.Errorf("status does not show the followed rules:\n%s", out)
	}
	if !regexp.MustCompile(`\n  ~/\.gitconfig .*\n    /srv/env-dotfiles/gitconfig +each run: \$GIT_CONFIG_GLOBAL in place of ~/\.gitconfig\n`).MatchString(out) {
		t.Errorf("status does not show the moved git config under ~/.gitconfig:\n%s", out)
	}
}

// TestStatusClaudeConfigDir: status and doctor say which Claude Code state
// directories aigate run protects: ~/.claude, and the one
// $CLAUDE_CONFIG_DIR moves it to (its rules among each run's deny_write),
// and the login $CLAUDE_SECURESTORAGE_CONFIG_DIR moves, or why run refuses
// to start with them.
func TestStatusClaudeConfigDir(t *testing.T) {
	e := newSandboxEnv(t)
	t.Setenv("TMPDIR", "")
	t.Setenv(claudestate.ConfigDirEnv, filepath.Join(e.home, ".claude-work"))
	sock := filepath.Join(t.TempDir(), "none.sock")
	var st Status
	if err := json.Unmarshal([]byte(e.ok("status", "--json", "--socket", sock)), &st); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.ClaudeState.Dirs, []string{"~/.claude", "~/.claude-work"}) || st.ClaudeState.Refused != "" {
		t.Errorf("claude_state: %+v", st.ClaudeState)
	}
	moved := false
	for _, r := range st.DenyWrite {
		moved = moved || (r.Value == "~/.claude-work/settings.json" && strings.Contains(r.File, "in place of ~/.claude/settings.json"))
	}
	if !moved {
		t.Errorf("deny_write lacks the moved settings.json: %+v", st.DenyWrite)
	}
	if out := e.ok("status", "--socket", sock); !strings.Contains(out, "Claude Code's state kept read-only where it runs code outside: ~/.claude, ~/.claude-work") {
		t.Errorf("status does not name the directories:\n%s", out)
	}
	doctorCheck := func() doctor.Check {
		t.Helper()
		out, _, _ := e.run("doctor", "--json")
		var r doctor.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, c := range r.Checks {
			if c.Name == "claude-state" {
				return c
			}
		}
		t.Fatalf("doctor has no claude-state check:\n%s", out)
		return doctor.Check{}
	}
	if c := doctorCheck(); c.Status != doctor.OK || !strings.Contains(c.Detail, "~/.claude-work") {
		t.Errorf("doctor: %+v", c)
	}

	// The login moved on its own by $CLAUDE_SECURESTORAGE_CONFIG_DIR:
	// named by both, its rule among each run's deny_write.
	t.Setenv(claudestate.SecureStorageEnv, filepath.Join(e.home, ".claude-login"))
	st = Status{}
	if err := json.Unmarshal([]byte(e.ok("status", "--json", "--socket", sock)), &st); err != nil {
		t.Fatal(err)
	}
	if st.ClaudeState.Login != "~/.claude-login/.credentials.json" || st.ClaudeState.Refused != "" {
		t.Errorf("claude_state: %+v", st.ClaudeState)
	}
	if !slices.ContainsFunc(st.DenyWrite, func(r StatusRule) bool {
		return r.Value == "~/.claude-login/.credentials.json" && strings.Contains(r.File, "in place of ~/.claude/.credentials.json")
	}) {
		t.Errorf("deny_write lacks the moved login: %+v", st.DenyWrite)
	}
	if out := e.ok("status", "--socket", sock); !strings.Contains(out, "~/.claude-work; its login: ~/.claude-login/.credentials.json") {
		t.Errorf("status does not name the login:\n%s", out)
	}
	if c := doctorCheck(); c.Status != doctor.OK || !strings.Contains(c.Detail, "its login: ~/.claude-login/.credentials.json") {
		t.Errorf("doctor: %+v", c)
	}
	// In the project: run refuses, and both say why.
	t.Setenv(claudestate.SecureStorageEnv, filepath.Join(e.proj, ".login"))
	st = Status{}
	if err := json.Unmarshal([]byte(e.ok("status", "--json", "--socket", sock)), &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.ClaudeState.Refused, claudestate.SecureStorageEnv) ||
		(!strings.Contains(st.ClaudeState.Refused, "not beneath your home") && !strings.Contains(st.ClaudeState.Refused, "which the sandbox may write")) {
		t.Errorf("claude_state: %+v", st.ClaudeState)
	}
	if c := doctorCheck(); c.Status != doctor.Warn || !strings.Contains(c.Fix, "unset "+claudestate.SecureStorageEnv) {
		t.Errorf("doctor: %+v", c)
	}
	t.Setenv(claudestate.SecureStorageEnv, "")

	// Inside the project: run refuses, and both say why.
	t.Setenv(claudestate.ConfigDirEnv, filepath.Join(e.proj, ".cc"))
	st = Status{}
	if err := json.Unmarshal([]byte(e.ok("status", "--json", "--socket", sock)), &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.ClaudeState.Refused, "not beneath your home") && !strings.Contains(st.ClaudeState.Refused, "which the sandbox may write") {
		t.Errorf("claude_state: %+v", st.ClaudeState)
	}
	if c := doctorCheck(); c.Status != doctor.Warn || !strings.Contains(c.Fix, "unset "+claudestate.ConfigDirEnv) {
		t.Errorf("doctor: %+v", c)
	}
}
