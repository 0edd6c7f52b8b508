package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
)

// sandboxEnv is a new user: an empty temporary HOME and project directory.
type sandboxEnv struct {
	t          *testing.T
	home, proj string
	fakeRoot   string
	// agentPlan is what the fake agent reset would remove; agentResets
	// counts its calls.
	agentPlan   []string
	agentResets int
	// stdin is what the next commands read; tty makes them see a person.
	stdin string
	tty   bool
	// user makes the commands run as a normal user (euid 1000) on paper.
	user bool
}

func newSandboxEnv(t *testing.T) *sandboxEnv {
	t.Helper()
	for _, k := range []string{"SUDO_UID", "SUDO_USER", "AIGATE_CONFIG", "AIGATE_LOG_LEVEL"} {
		t.Setenv(k, "")
	}
	e := &sandboxEnv{t: t, home: t.TempDir(), proj: t.TempDir(), fakeRoot: t.TempDir()}
	t.Setenv("HOME", e.home)
	// Resolve symlinks as Locate does, so expected paths compare equal.
	var err error
	if e.proj, err = filepath.EvalSymlinks(e.proj); err != nil {
		t.Fatal(err)
	}
	// A fake /sys and /proc so that status and doctor do not depend on the
	// machine running the tests.
	e.write(filepath.Join(e.fakeRoot, "sys/kernel/btf/vmlinux"), "x")
	e.write(filepath.Join(e.fakeRoot, "sys/kernel/security/lsm"), "capability,bpf")
	e.write(filepath.Join(e.fakeRoot, "proc/self/mountinfo"),
		"30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n31 22 0:27 / /sys/fs/bpf rw - bpf bpf rw\n")
	return e
}

func (e *sandboxEnv) write(path, content string) {
	e.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *sandboxEnv) read(path string) string {
	e.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *sandboxEnv) global() string  { return filepath.Join(e.home, ".aigate", "config.yaml") }
func (e *sandboxEnv) project() string { return filepath.Join(e.proj, ".aigate.yaml") }

// run runs aigate with args and returns stdout, stderr and the exit code.
func (e *sandboxEnv) run(args ...string) (string, string, cmdutil.ExitCode) {
	e.t.Helper()
	var out, errb bytes.Buffer
	f := &cmdutil.Factory{
		In:  strings.NewReader(e.stdin),
		Out: &out,
		Err: &errb,
		Env: config.Env{
			Getenv: os.Getenv,
			Euid:   os.Geteuid(),
			Getwd:  func() (string, error) { return e.proj, nil },
		},
		Now:           func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) },
		DoctorRoot:    e.fakeRoot,
		KernelRelease: "6.1.0-test",
		// Never the real ResetAgent: tests must not touch the machine's agent.
		AgentResetPlan: func() []string { return e.agentPlan },
		AgentReset:     func(*cmdutil.Factory) error { e.agentResets++; return nil },
	}
	if e.tty {
		f.Interactive = func() bool { return true }
	}
	if e.user {
		f.Env.Euid = 1000
	}
	code := Main(context.Background(), f, args)
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed.
func (e *sandboxEnv) ok(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != cmdutil.ExitOK {
		e.t.Fatalf("aigate %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails runs a command that must exit with want; it returns stderr.
func (e *sandboxEnv) fails(want cmdutil.ExitCode, args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != want {
		e.t.Fatalf("aigate %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errs)
	}
	if want != cmdutil.ExitOK && errs != "" && strings.Count(errs, "aigate: ") != 1 {
		e.t.Errorf("aigate %s: the error must be printed exactly once:\n%s", strings.Join(args, " "), errs)
	}
	return errs
}

func TestInitDenyAllowRoundTrip(t *testing.T) {
	e := newSandboxEnv(t)
	out := e.ok("init")
	if !strings.Contains(out, "wrote ~/.aigate/config.yaml") {
		t.Errorf("init output: %s", out)
	}
	def := string(policy.DefaultYAML())
	if got := e.read(e.global()); got != def {
		t.Fatalf("init wrote something other than policy.DefaultYAML()")
	}
	if errs := e.fails(cmdutil.ExitError, "init"); !strings.Contains(errs, "--force") {
		t.Errorf("second init must refuse and mention --force: %s", errs)
	}
	e.ok("init", "--force")

	out = e.ok("deny", "read", "foo", "*.sqlite", ".env")
	for _, want := range []string{"deny_read += foo", "deny_read += *.sqlite", "deny_read already has .env"} {
		if !strings.Contains(out, want) {
			t.Errorf("deny output lacks %q:\n%s", want, out)
		}
	}
	// Inserted after the last deny_read entry; every comment and blank
	// line of the default file is still there.
	want := strings.Replace(def, "  - ~/.local/share/jupyter/runtime/\n", "  - ~/.local/share/jupyter/runtime/\n  - foo\n  - '*.sqlite'\n", 1)
	if got := e.read(e.global()); got != want {
		t.Fatalf("after deny:\n%s", unifiedDiff(want, got))
	}
	e.ok("deny", "exec", "docker")
	e.ok("deny", "write", "Makefile")

	// allow undoes deny exactly: the file is byte for byte the default again.
	e.ok("allow", "read", "foo", "*.sqlite")
	e.ok("allow", "exec", "docker")
	e.ok("allow", "write", "Makefile")
	if got := e.read(e.global()); got != def {
		t.Fatalf("deny then allow must restore the file:\n%s", unifiedDiff(def, got))
	}
	out = e.ok("allow", "read", "never-denied")
	if !strings.Contains(out, "nothing to allow") || e.read(e.global()) != def {
		t.Errorf("allowing what is not denied: %s", out)
	}
}

func TestDenyCreatesGlobalFromDefaults(t *testing.T) {
	e := newSandboxEnv(t)
	out := e.ok("deny", "exec", "docker")
	if !strings.Contains(out, "created ~/.aigate/config.yaml from the defaults") {
		t.Errorf("deny on a missing file must say it created it: %s", out)
	}
	def := string(policy.DefaultYAML())
	want := strings.Replace(def, "  - telnet\n", "  - telnet\n  - docker\n", 1)
	if got := e.read(e.global()); got != want {
		t.Fatalf("got:\n%s", unifiedDiff(want, got))
	}
	if fi, err := os.Stat(filepath.Dir(e.global())); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("~/.aigate mode: %v %v", fi.Mode(), err)
	}
}

func TestEditPreservesCommentsAndOrder(t *testing.T) {
	e := newSandboxEnv(t)
	const orig = `# my own config

net: deny   # keep it tight

allow_net:
  - github.com   # code

# secrets
deny_read:
    - .env        # dotenv

    - "*.pem"
# end
`
	e.write(e.global(), orig)
	e.ok("deny", "read", "id_rsa")
	e.ok("allow", "net", "pypi.org")
	e.ok("allow", "read", ".env")
	want := `# my own config

net: deny   # keep it tight

allow_net:
  - github.com   # code
  - pypi.org

# secrets
deny_read:

    - "*.pem"
    - id_rsa
# end
`
	if got := e.read(e.global()); got != want {
		t.Fatalf("got:\n%s", unifiedDiff(want, got))
	}
	e.ok("deny", "net", "--except", "api.example.com", "pypi.org")
	// --except means "only these": github.com goes too.
	// The emptied list is refilled at the indentation of the file's other list.
	want = strings.Replace(want, "  - github.com   # code\n  - pypi.org\n", "    - api.example.com\n", 1)
	if got := e.read(e.global()); got != want {
		t.Fatalf("deny net:\n%s", unifiedDiff(want, got))
	}
	e.ok("allow", "net", "--all")
	if got := e.read(e.global()); !strings.Contains(got, "net: allow   # keep it tight\n") {
		t.Fatalf("allow net --all:\n%s", got)
	}
}

func TestDenyNetExceptMeansOnly(t *testing.T) {
	e := newSandboxEnv(t)
	e.ok("init")
	out := e.ok("deny", "net", "--except", "api.anthropic.com", "--except", "example.org:8443")
	l, err := policy.Parse(e.global(), []byte(e.read(e.global())))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ep := range l.AllowNet {
		got = append(got, ep.Raw)
	}
	if want := []string{"api.anthropic.com", "example.org:8443"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("allow_net after --except = %v, want %v", got, want)
	}
	for _, w := range []string{"allow_net -= platform.claude.com, downloads.claude.ai, api.openai.com, api.github.com, github.com, ", "sum.golang.org (not in --except)", "allow_net += example.org:8443"} {
		if !strings.Contains(out, w) {
			t.Errorf("output should say %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "api.anthropic.com,") || strings.Contains(out, "-= api.anthropic.com") {
		t.Errorf("an --except entry was reported removed:\n%s", out)
	}
	// allow net adds without replacing.
	e.ok("allow", "net", "pypi.org")
	if l, _ = policy.Parse(e.global(), []byte(e.read(e.global()))); len(l.AllowNet) != 3 {
		t.Errorf("allow net should add to the list: %v", l.AllowNet)
	}
	// A project file cannot narrow the global list: say what stays allowed.
	_, errs, code := e.run("deny", "net", "--project", "--except", "api.anthropic.com")
	if code != cmdutil.ExitOK || !strings.Contains(errs, "the global config still allows example.org:8443, pypi.org") {
		t.Errorf("deny net --except --project: exit %d, stderr %q", code, errs)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newSandboxEnv(t)
	e.ok("init")
	before := e.read(e.global())
	fi0, _ := os.Stat(e.global())
	for _, tc := range []struct {
		args []string
		code cmdutil.ExitCode
		want string
	}{
		{[]string{"deny", "read", "good", "a/**/b"}, cmdutil.ExitUsage, `pattern "a/**/b"`},
		{[]string{"deny", "read", "x?y"}, cmdutil.ExitUsage, `'?' is glob syntax`},
		{[]string{"allow", "net", "exa mple.com"}, cmdutil.ExitUsage, "exa mple.com"},
		{[]string{"deny", "net", "--except", "10.0.0.0/33"}, cmdutil.ExitUsage, "10.0.0.0/33"},
		{[]string{"allow", "net", "host:99999"}, cmdutil.ExitUsage, "host:99999"},
		{[]string{"deny", "read"}, cmdutil.ExitUsage, "arg"},
		{[]string{"deny", "files", "x"}, cmdutil.ExitUsage, `"files"`},
		{[]string{"allow"}, cmdutil.ExitUsage, "want read, write, exec or net"},
		{[]string{"allow", "net"}, cmdutil.ExitUsage, "--all"},
		{[]string{"frobnicate"}, cmdutil.ExitUsage, "unknown command"},
		{[]string{"stauts"}, cmdutil.ExitUsage, "did you mean status?"},
		{[]string{"run"}, cmdutil.ExitUsage, "aigate run -- COMMAND"},
		{[]string{"status", "--frob"}, cmdutil.ExitUsage, "unknown flag"},
		{[]string{"status", "extra"}, cmdutil.ExitUsage, "unknown command"},
		{[]string{"--log-level", "loud", "status"}, cmdutil.ExitUsage, "--log-level"},
	} {
		errs := e.fails(tc.code, tc.args...)
		if !strings.HasPrefix(errs, "aigate: ") || !strings.Contains(errs, tc.want) {
			t.Errorf("aigate %s: stderr %q, want it to start with \"aigate: \" and mention %q", strings.Join(tc.args, " "), errs, tc.want)
		}
	}
	if got := e.read(e.global()); got != before {
		t.Fatalf("a rejected command changed the file:\n%s", unifiedDiff(before, got))
	}
	fi1, _ := os.Stat(e.global())
	if !fi1.ModTime().Equal(fi0.ModTime()) {
		t.Error("a rejected command rewrote the file")
	}
	assertNoTemp(t, filepath.Dir(e.global()))
}

func TestBrokenFileIsNotEdited(t *testing.T) {
	e := newSandboxEnv(t)
	const broken = "deny_read:\n  - .env\ndeny_raed:\n  - x\n"
	e.write(e.global(), broken)
	errs := e.fails(cmdutil.ExitError, "deny", "read", "y")
	if !strings.Contains(errs, "config.yaml:3") || !strings.Contains(errs, "deny_read") {
		t.Errorf("error should name file:line and the closest key: %s", errs)
	}
	if e.read(e.global()) != broken {
		t.Error("broken file was changed")
	}
	if errs := e.fails(cmdutil.ExitError, "status"); !strings.Contains(errs, "config.yaml:3") {
		t.Errorf("status on a broken file: %s", errs)
	}
}

func TestDryRun(t *testing.T) {
	e := newSandboxEnv(t)
	out := e.ok("deny", "read", "--dry-run", "foo")
	if !strings.Contains(out, "--- /dev/null") || !strings.Contains(out, "+  - foo\n") || !strings.Contains(out, "dry run") {
		t.Errorf("dry run on a missing file:\n%s", out)
	}
	// The last line must not read as if the change were made.
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, "deny_read += foo") && !strings.Contains(line, "not written") {
			t.Errorf("dry-run report line reads as applied: %q", line)
		}
	}
	if _, err := os.Stat(filepath.Dir(e.global())); !os.IsNotExist(err) {
		t.Fatalf("dry run created ~/.aigate: %v", err)
	}
	e.ok("init")
	before := e.read(e.global())
	out = e.ok("allow", "exec", "--dry-run", "curl")
	if !strings.Contains(out, "-  - curl\n") || !strings.Contains(out, "@@ ") {
		t.Errorf("dry run diff:\n%s", out)
	}
	if e.read(e.global()) != before {
		t.Fatal("dry run wrote the file")
	}
}

func TestStatusJSON(t *testing.T) {
	e := newSandboxEnv(t)
	e.ok("init")
	e.ok("deny", "read", "foo")
	out := e.ok("status", "--json")

	var st Status
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("status --json does not match the Status schema: %v\n%s", err, out)
	}
	if st.SchemaVersion != 1 || st.Net != policy.NetDeny || st.Mode != policy.ModeEnforce || !st.Global.Exists || st.Global.Path != e.global() {
		t.Errorf("header: %+v", st)
	}
	if st.Project != nil {
		t.Errorf("project: %+v, want null", st.Project)
	}
	var foo *StatusRule
	for i, r := range st.DenyRead {
		if r.Value == "foo" {
			foo = &st.DenyRead[i]
		}
	}
	if foo == nil || foo.File != e.global() || foo.Line != 84 {
		t.Errorf("deny_read foo: %+v, want %s:84", foo, e.global())
	}
	if len(st.ExceptRead) == 0 || st.ExceptRead[0].Value != "~/go/pkg/mod/" {
		t.Errorf("except_read: %+v", st.ExceptRead)
	}
	if len(st.AllowNet) != 11 || st.AllowNet[0].Value != "api.anthropic.com" || st.AllowNet[0].Line == 0 {
		t.Errorf("allow_net: %+v", st.AllowNet)
	}
	if st.Kernel == nil || !st.Kernel.Ready || st.Kernel.Backend != "lsm" || len(st.Kernel.Checks) == 0 {
		t.Errorf("kernel: %+v", st.Kernel)
	}
	// Lists are [] rather than null, so consumers can iterate blindly.
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"deny_read", "deny_write", "deny_exec", "allow_net", "allow_unix", "mask_output", "writable", "warnings"} {
		if _, ok := raw[k].([]any); !ok {
			t.Errorf("%s is %T, want a JSON array", k, raw[k])
		}
	}
}

func TestStatusHuman(t *testing.T) {
	e := newSandboxEnv(t)
	out := e.ok("status")
	for _, want := range []string{
		"does not exist: built-in defaults apply",
		"project  none",
		"Network: deny, except 11 allowed destination(s) and the sandbox's own loopback servers",
		"  .env                                  built-in\n",
		"(except_read)",
		"Deny exec (11)",
		"Kernel: ready: BPF LSM backend",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

func TestTrustFlow(t *testing.T) {
	e := newSandboxEnv(t)
	e.ok("init")
	// A cloned repository's config: one deny rule, and two loosening
	// entries that must not apply until the user trusts the file.
	const cloned = "deny_read:\n  - local.secret\nallow_net:\n  - evil.example.com\nallow_exec:\n  - curl\n"
	e.write(e.project(), cloned)

	st := e.status()
	if st.Project == nil || st.Project.Trust != "untrusted" || st.Project.Root != e.proj {
		t.Fatalf("project: %+v", st.Project)
	}
	if hasRule(st.AllowNet, "evil.example.com") || !hasRule(st.DenyExec, "curl") || !hasRule(st.DenyRead, "local.secret") {
		t.Errorf("untrusted: allow_net %v, deny_exec %v, deny_read %v", st.AllowNet, st.DenyExec, st.DenyRead)
	}
	if !warned(st, "evil.example.com") || !warned(st, "curl") {
		t.Errorf("untrusted loosening must be warned about: %+v", st.Warnings)
	}

	// No terminal and no --yes: shown, not trusted.
	errs := e.fails(cmdutil.ExitError, "trust")
	if !strings.Contains(errs, "aigate trust --yes") {
		t.Errorf("trust without a terminal: %s", errs)
	}
	if e.status().Project.Trust != "untrusted" {
		t.Fatal("trust without a terminal or --yes trusted the file")
	}
	// On a terminal it asks; "n" keeps it untrusted, "y" trusts.
	e.tty, e.stdin = true, "n\n"
	if out := e.ok("trust"); !strings.Contains(out, "was not trusted") || !strings.Contains(out, "   1  ") {
		t.Errorf("trust answered no:\n%s", out)
	}
	if e.status().Project.Trust != "untrusted" {
		t.Fatal("trust answered no trusted the file")
	}
	e.stdin = "y\n"
	out := e.ok("trust")
	e.tty, e.stdin = false, ""
	for _, want := range []string{"loosens your policy", "allow_net evil.example.com", "cancels deny_exec curl", "   4    - evil.example.com\n", "trusted "} {
		if !strings.Contains(out, want) {
			t.Errorf("trust output lacks %q:\n%s", want, out)
		}
	}
	st = e.status()
	if st.Project.Trust != "trusted" || !hasRule(st.AllowNet, "evil.example.com") || hasRule(st.DenyExec, "curl") || len(st.Warnings) != 0 {
		t.Errorf("trusted: %+v", st)
	}
	if out := e.ok("trust"); !strings.Contains(out, "already trusted") {
		t.Errorf("second trust: %s", out)
	}

	// An edit by hand (or by anything else) un-trusts the file.
	e.write(e.project(), cloned+"  - ssh\n")
	st = e.status()
	if st.Project.Trust != "changed" || hasRule(st.AllowNet, "evil.example.com") || !warned(st, "changed since it was trusted") {
		t.Errorf("after a hand edit: %+v", st)
	}

	e.ok("trust", "--yes")
	e.ok("trust", "--revoke")
	if st = e.status(); st.Project.Trust != "untrusted" {
		t.Errorf("after --revoke: %+v", st.Project)
	}
}

func TestProjectEdits(t *testing.T) {
	e := newSandboxEnv(t)
	// An untrusted file: the user's allow adds the entry but it waits for trust.
	e.write(e.project(), "deny_read:\n  - mine\n")
	_, errs, code := e.run("allow", "read", "--project", "*.pem")
	if code != cmdutil.ExitOK || !strings.Contains(errs, "aigate trust") {
		t.Fatalf("allow --project on an untrusted file: exit %d, stderr %s", code, errs)
	}
	if got := e.read(e.project()); got != "deny_read:\n  - mine\nallow_read:\n  - '*.pem'\n" {
		t.Errorf("project file:\n%s", got)
	}
	if st := e.status(); !hasRule(st.DenyRead, "*.pem") {
		t.Error("*.pem allowed before trust")
	}
	e.ok("trust", "--yes")
	if st := e.status(); hasRule(st.DenyRead, "*.pem") {
		t.Error("*.pem still denied after trust")
	}
	// The user's own edit of a trusted file stays trusted.
	e.ok("allow", "net", "--project", "registry.example.com")
	if st := e.status(); st.Project.Trust != "trusted" || !hasRule(st.AllowNet, "registry.example.com") {
		t.Errorf("own edit of a trusted file: %+v", st.Project)
	}
	// A rule the project denies itself is simply removed.
	e.ok("allow", "read", "--project", "mine")
	if got := e.read(e.project()); strings.Contains(got, "mine") {
		t.Errorf("mine still in:\n%s", got)
	}
	// deny removes a matching allow entry of the same file.
	e.ok("deny", "read", "--project", "*.pem")
	if got := e.read(e.project()); strings.Contains(got, "allow_read:\n  - '*.pem'") || !strings.Contains(got, "deny_read:\n  - '*.pem'") {
		t.Errorf("deny after allow:\n%s", got)
	}
}

func TestInitProject(t *testing.T) {
	e := newSandboxEnv(t)
	out := e.ok("init", "--project")
	if !strings.Contains(out, "(trusted)") || e.read(e.project()) != projectTemplate {
		t.Fatalf("init --project: %s", out)
	}
	e.fails(cmdutil.ExitError, "init", "--project")
	e.ok("deny", "read", "--project", "config/prod.yaml")
	st := e.status()
	if st.Project == nil || st.Project.Trust != "trusted" || !hasRule(st.DenyRead, "config/prod.yaml") {
		t.Errorf("status: %+v", st.Project)
	}
	got := e.read(e.project())
	if !strings.HasPrefix(got, projectTemplate[:strings.Index(projectTemplate, "deny_read")]) ||
		!strings.Contains(got, "deny_read:\n  - config/prod.yaml\n\n# Files the agent may read") {
		t.Errorf("project file:\n%s", got)
	}
}

func TestReset(t *testing.T) {
	e := newSandboxEnv(t)
	if out := e.ok("reset"); !strings.Contains(out, "nothing to remove") {
		t.Errorf("reset with nothing: %s", out)
	}
	e.ok("init")
	e.write(e.project(), "deny_read: [x]\n")
	e.ok("trust", "--yes")
	out, _, code := e.run("reset")
	if code != cmdutil.ExitUsage || !strings.Contains(out, "~/.aigate/config.yaml") || !strings.Contains(out, "~/.aigate/trusted.yaml") {
		t.Fatalf("reset without --force: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(e.global()); err != nil {
		t.Fatal("reset without --force removed the config")
	}
	e.agentPlan = []string{"/etc/systemd/system/aigate.service"}
	if out, _, _ := e.run("reset"); !strings.Contains(out, "aigate.service (aigate agent)") {
		t.Errorf("reset plan lacks the agent:\n%s", out)
	}
	if e.agentResets != 0 {
		t.Fatal("reset without --force reset the agent")
	}
	e.ok("reset", "--force")
	if e.agentResets != 1 {
		t.Errorf("agent resets: %d, want 1", e.agentResets)
	}
	if _, err := os.Stat(filepath.Join(e.home, ".aigate")); !os.IsNotExist(err) {
		t.Errorf("~/.aigate still there: %v", err)
	}
	if _, err := os.Stat(e.project()); err != nil {
		t.Error("reset removed a project file")
	}
}

// A normal user's reset removes their own files and leaves the agent's,
// naming them, rather than failing on the first root-owned one.
func TestResetAsUser(t *testing.T) {
	e := newSandboxEnv(t)
	e.user = true
	e.agentPlan = []string{"/run/aigate", "group aigate"}
	out := e.ok("reset")
	if !strings.Contains(out, "nothing to remove") || !strings.Contains(out, "needs root") || !strings.Contains(out, "/run/aigate (aigate agent)") {
		t.Errorf("reset as a user with nothing of theirs:\n%s", out)
	}
	e.ok("init")
	out, _, code := e.run("reset")
	want := "aigate reset --force would remove:\n  ~/.aigate/config.yaml\nThe built-in defaults"
	if code != cmdutil.ExitUsage || !strings.Contains(out, want) || !strings.Contains(out, "Left alone, because removing them needs root") {
		t.Errorf("dry run as a user: exit %d\n%s", code, out)
	}
	out = e.ok("reset", "--force")
	if e.agentResets != 0 {
		t.Error("a user's reset reset the agent")
	}
	if _, err := os.Stat(e.global()); !os.IsNotExist(err) {
		t.Errorf("config still there: %v", err)
	}
	if !strings.Contains(out, "group aigate (aigate agent)") {
		t.Errorf("reset --force should name what it left:\n%s", out)
	}
}

func TestMiscCommands(t *testing.T) {
	e := newSandboxEnv(t)
	if out := e.ok("version"); !strings.HasPrefix(out, "aigate dev\ncommit ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %s", out)
	}
	if out := e.ok("--version"); out != e.ok("version") {
		t.Errorf("--version and version differ: %q", out)
	}
	// A version from git describe without a tag is the commit: once.
	cmdutil.Version, cmdutil.Commit = "d96da81-dirty", "d96da81-dirty"
	defer func() { cmdutil.Version, cmdutil.Commit = "dev", "" }()
	if out := e.ok("version"); strings.Count(out, "d96da81") != 1 {
		t.Errorf("version names the commit twice:\n%s", out)
	}
	cmdutil.Version, cmdutil.Commit = "dev", ""
	if out := e.ok("completion", "bash"); !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash: %.200s", out)
	}
	out := e.ok("help-ai")
	for _, want := range []string{"WHAT IS BLOCKED", "~/.ssh/", "curl", "api.anthropic.com", "aigate trust", "WHAT NOT TO TRY"} {
		if !strings.Contains(out, want) {
			t.Errorf("help-ai lacks %q", want)
		}
	}
	out = e.ok("doctor")
	// The name column is as wide as the longest check name.
	if !regexp.MustCompile(`(?m)^bpf-lsm +ok `).MatchString(out) || !strings.Contains(out, "ready: BPF LSM backend") {
		t.Errorf("doctor:\n%s", out)
	}
	// A kernel without cgroup v2: not ready, exit 1, and the fix is printed.
	e.write(filepath.Join(e.fakeRoot, "proc/self/mountinfo"), "22 1 0:21 / /sys rw - sysfs sysfs rw\n")
	out, _, code := e.run("doctor")
	if code != cmdutil.ExitError || !strings.Contains(out, "mount -t cgroup2") {
		t.Errorf("doctor without cgroup2: exit %d\n%s", code, out)
	}
	out, _, _ = e.run("doctor", "--json")
	var r struct {
		Ready  bool
		Checks []struct{ Name, Status, Fix string }
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Ready || len(r.Checks) == 0 {
		t.Errorf("doctor --json: %v %+v", err, r)
	}
	// Global flags through the environment.
	t.Setenv("AIGATE_CONFIG", filepath.Join(e.home, "elsewhere.yaml"))
	e.ok("init")
	if _, err := os.Stat(filepath.Join(e.home, "elsewhere.yaml")); err != nil {
		t.Errorf("AIGATE_CONFIG not honoured: %v", err)
	}
	t.Setenv("AIGATE_LOG_LEVEL", "debug")
	if _, errs, _ := e.run("status"); !strings.Contains(errs, "config paths") {
		t.Errorf("AIGATE_LOG_LEVEL=debug logged nothing: %s", errs)
	}
}

func (e *sandboxEnv) status() *Status {
	e.t.Helper()
	var st Status
	if err := json.Unmarshal([]byte(e.ok("status", "--json")), &st); err != nil {
		e.t.Fatal(err)
	}
	return &st
}

func hasRule(rules []StatusRule, v string) bool {
	for _, r := range rules {
		if r.Value == v {
			return true
		}
	}
	return false
}

func warned(st *Status, s string) bool {
	for _, w := range st.Warnings {
		if strings.Contains(w.Message, s) {
			return true
		}
	}
	return false
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

func unifiedDiff(want, got string) string {
	return config.Diff("want->got", []byte(want), []byte(got))
}

// status says which tools get caches of the sandboxes' own and which share
// the user's, with the shared_caches entry that shares them.
func TestStatusToolCaches(t *testing.T) {
	e := newSandboxEnv(t)
	e.write(e.global(), "shared_caches:\n  - npm\n  - maven\n")
	st := e.status()
	want := []StatusToolCache{
		{Tool: "go", Own: []string{"~/.cache/aigate/go-build", "~/.cache/aigate/go-mod"}, User: []string{"~/.cache/go-build/", "~/go/pkg/mod/"}},
		{Tool: "npm", Own: []string{}, User: []string{"~/.npm/"}, File: e.global(), Line: 2},
		{Tool: "pip", Own: []string{"~/.cache/aigate/pip"}, User: []string{"~/.cache/pip/"}},
		{Tool: "cargo", Own: []string{"~/.cache/aigate/cargo"}, User: []string{"~/.cargo/registry/", "~/.cargo/git/"}},
		{Tool: "gradle", Own: []string{"~/.cache/aigate/gradle"}, User: []string{"~/.gradle/"}},
		{Tool: "maven", Own: []string{}, User: []string{"~/.m2/repository/"}, File: e.global(), Line: 3},
	}
	if st.XDGCacheHome != "~/.cache/aigate/xdg" {
		t.Errorf("xdg_cache_home %q", st.XDGCacheHome)
	}
	if fmt.Sprint(st.ToolCaches) != fmt.Sprint(want) {
		t.Errorf("tool_caches:\n%+v\nwant\n%+v", st.ToolCaches, want)
	}
	if !hasRule(st.DenyWrite, "~/.cache/go-build/") || hasRule(st.DenyWrite, "~/.npm/") {
		t.Errorf("deny_write: %+v", st.DenyWrite)
	}
	out := e.ok("status")
	for _, line := range []string{
		"go      the sandboxes' own (~/.cache/aigate/go-build, ~/.cache/aigate/go-mod); yours deny_write inside",
		"npm     shared with yours (~/.npm/): a sandbox can plant code that runs at your next npm outside",
		"cargo   the sandboxes' own (~/.cache/aigate/cargo); yours deny_write inside",
		"gradle  the sandboxes' own (~/.cache/aigate/gradle); yours deny_write inside",
		"others  XDG_CACHE_HOME=~/.cache/aigate/xdg; the rest of ~/.cache read-only inside",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("status lacks %q:\n%s", line, out)
		}
	}
}
