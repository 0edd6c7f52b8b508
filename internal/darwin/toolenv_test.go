package darwin

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

func TestToolEnv(t *testing.T) {
	in := []string{"PATH=/usr/bin:/bin", "HOME=/var/root", "USER=root", "SUDO_USER=alice", "TMPDIR=/var/folders/x/T/",
		"ANTHROPIC_API_KEY=sk-1", "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=core.pager", "GIT_CONFIG_VALUE_0=cat"}
	got := ToolEnv(in, testUser, "/Users/alice/src/proj")
	want := []string{"PATH=/usr/bin:/bin", "ANTHROPIC_API_KEY=sk-1", "GIT_CONFIG_KEY_0=core.pager", "GIT_CONFIG_VALUE_0=cat",
		"HOME=" + DefaultHome, "USER=_aigate", "LOGNAME=_aigate",
		"GIT_CONFIG_KEY_1=safe.directory", "GIT_CONFIG_VALUE_1=/Users/alice/src/proj", "GIT_CONFIG_COUNT=2"}
	if !slices.Equal(got, want) {
		t.Errorf("ToolEnv:\n got %q\nwant %q", got, want)
	}
	f := fstest.MapFS{"Users/alice/mono/.git/HEAD": {Data: []byte("x")}, "Users/alice/mono/svc/a/x.go": {Data: []byte("x")}}
	if g := GitTop(f, "/Users/alice/mono/svc/a"); g != "/Users/alice/mono" {
		t.Errorf("GitTop in a subdirectory = %q", g)
	}
	if g := GitTop(f, "/Users/alice/other"); g != "/Users/alice/other" {
		t.Errorf("GitTop without a repository = %q", g)
	}
	hint := SudoHint([]string{"ANTHROPIC_API_KEY=sk", "OPENAI_API_KEY=", "HTTPS_PROXY=http://p"}, []string{"claude", "--resume"})
	if hint != "sudo --preserve-env=ANTHROPIC_API_KEY,HTTPS_PROXY aigate run -- claude --resume" {
		t.Errorf("hint = %q", hint)
	}
	if HasAuth([]string{"ANTHROPIC_API_KEY="}) || !HasAuth([]string{"CLAUDE_CODE_OAUTH_TOKEN=x"}) {
		t.Error("HasAuth")
	}
}

// TestToolEnvGitSafeDirectory runs git for real (the same code on Linux as
// on macOS; Apple ships git 2.39) as another uid in a repository owned by
// root: without ToolEnv's safe.directory it refuses the repository as of
// dubious ownership, with it it works.
func TestToolEnvGitSafeDirectory(t *testing.T) {
	testutil.RequireRoot(t)
	git, err := exec.LookPath("git")
	if err != nil {
		testutil.SkipUnlessKernel(t, "no git")
	}
	dir := t.TempDir()
	// The other uid must reach the repository: t.TempDir and its parent
	// are 0700.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	repo := filepath.Join(dir, "proj")
	if out, err := exec.Command(git, "init", "-q", repo).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	u := SandboxUser{Name: "nobody", UID: 65534, GID: 65534, Home: dir}
	run := func(env []string) (string, error) {
		c := exec.Command(git, "status", "--porcelain")
		c.Dir, c.Env = repo, env
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID}}
		out, err := c.CombinedOutput()
		return string(out), err
	}
	base := []string{"PATH=" + os.Getenv("PATH")}
	if out, err := run(ToolEnv(base, u, "")); err == nil || !strings.Contains(out, "dubious ownership") {
		t.Fatalf("control: git as another uid without safe.directory: %v %s", err, out)
	}
	if out, err := run(ToolEnv(base, u, GitTop(os.DirFS("/"), repo))); err != nil {
		t.Errorf("git with ToolEnv: %v %s", err, out)
	}
}

func TestAddLoginDomains(t *testing.T) {
	c := testPolicy()
	n := len(c.Rules)
	added := AddLoginDomains(c)
	if !slices.Equal(added, LoginDomains) {
		t.Fatalf("added %q", added)
	}
	for _, d := range c.Net.Domains[len(c.Net.Domains)-len(added):] {
		r, ok := c.Rule(d.Rule)
		if !ok || d.Port != 443 || !strings.Contains(r.Pattern, "Claude Code login") {
			t.Errorf("%+v: rule %+v", d, r)
		}
	}
	if len(c.Rules) != n+len(added) || AddLoginDomains(c) != nil {
		t.Error("not idempotent")
	}
	c = testPolicy()
	c.Net.Domains = c.Net.Domains[1:] // no api.anthropic.com
	if AddLoginDomains(c) != nil {
		t.Error("added login hosts to a policy that does not allow the API")
	}
	c = testPolicy()
	c.Net.Mode = policy.NetAllow
	if AddLoginDomains(c) != nil {
		t.Error("added to an allow-all policy")
	}
}
