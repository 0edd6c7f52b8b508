package darwin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/aigate-dev/aigate/internal/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file; got:\n%s\nwant:\n%s", p, got, want)
	}
}

var testUser = SandboxUser{Name: "_aigate", UID: 499, GID: 499, Home: DefaultHome}

// testPolicy is a hand-compiled policy covering every FileSet form and
// every kind of network entry, independent of policy.Compile.
func testPolicy() *policy.Compiled {
	c := &policy.Compiled{Mode: policy.ModeEnforce}
	rule := func(a policy.Access, pat string) policy.RuleID {
		id := policy.RuleID(len(c.Rules) + 1)
		c.Rules = append(c.Rules, policy.Rule{ID: id, Access: a, Pattern: pat})
		return id
	}
	e := func(v string, id policy.RuleID) policy.Entry { return policy.Entry{Value: v, Rule: id} }
	c.Read.Names = []policy.Entry{e(".env", rule(policy.AccessRead, ".env")), e("secrets", rule(policy.AccessRead, "secrets/"))}
	c.Read.NamePrefix = []policy.Entry{e(".env.", rule(policy.AccessRead, ".env.*")), e("id_rsa", rule(policy.AccessRead, "id_rsa*"))}
	c.Read.NameSuffix = []policy.Entry{e(".pem", rule(policy.AccessRead, "*.pem"))}
	c.Read.Paths = []policy.Entry{e("/home/alice/.ssh", rule(policy.AccessRead, "~/.ssh/")), e("/home/alice/.aws", rule(policy.AccessRead, "~/.aws/"))}
	c.Write.Paths = []policy.Entry{
		e("/home/alice/.zshrc", rule(policy.AccessWrite, "~/.zshrc")),
		e("/home/alice/src/proj/.git/hooks", rule(policy.AccessWrite, ".git/hooks/")),
		e("/home/alice/src/proj/.aigate.yaml", rule(policy.AccessWrite, ".aigate.yaml")),
	}
	c.Exec.Names = []policy.Entry{e("curl", rule(policy.AccessExec, "curl"))}
	deny := rule(0, "net: deny")
	c.Net = policy.NetPolicy{
		Mode:     policy.NetDeny,
		Loopback: policy.LoopbackAll,
		DenyRule: deny,
		Deny:     []policy.NetEntry{{Prefix: netip.MustParsePrefix("169.254.169.254/32"), Rule: rule(0, "metadata")}},
		Allow: []policy.NetEntry{
			{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Rule: rule(0, "10.1.0.0/16")},
			{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Port: 8443, Rule: rule(0, "192.0.2.7:8443")},
		},
		Domains: []policy.DomainEntry{
			{Name: "api.anthropic.com", Rule: rule(0, "api.anthropic.com")},
			{Name: "github.com", Port: 443, Rule: rule(0, "github.com:443")},
			{Name: "example.org", Wildcard: true, Rule: rule(0, "*.example.org")},
		},
	}
	return c
}

// testFS is a small machine: a home with secrets, a project inside it, and
// PATH directories (one on the sealed volume, one Homebrew).
func testFS() fstest.MapFS {
	f := fstest.MapFS{}
	for _, p := range []string{
		"home/alice/.zshrc",
		"home/alice/.ssh/id_ed25519",
		"home/alice/notes/.env.backup",
		"home/alice/Library/Caches/x/id_rsa_old",
		"home/alice/src/proj/.env",
		"home/alice/src/proj/main.go",
		"home/alice/src/proj/.aigate.yaml",
		"home/alice/src/proj/.git/hooks/pre-commit",
		"home/alice/src/proj/certs/server.pem",
		"home/alice/src/proj/secrets/token.txt",
		"home/alice/src/proj/secrets/inner.pem", // inside a read-denied dir: not searched
		"home/alice/src/proj/node_modules/pkg/.env",
		"usr/bin/curl",
		"opt/homebrew/bin/curl",
		"opt/homebrew/bin/jq",
	} {
		f[p] = &fstest.MapFile{Data: []byte("x"), Mode: 0o644}
	}
	f["home/alice/link-to-etc"] = &fstest.MapFile{Data: []byte("/etc"), Mode: os.ModeSymlink | 0o777}
	return f
}

func testEnv(t *testing.T) Env {
	return Env{
		User:        testUser,
		ProjectRoot: "/home/alice/src/proj",
		Home:        "/home/alice",
		Owner:       "alice",
		StateFile:   filepath.Join(t.TempDir(), StateFileName),
		FS:          testFS(),
		ExecDirs:    []string{"/usr/bin", "/opt/homebrew/bin"},
		Resolver: fakeResolver{
			"api.anthropic.com": {netip.MustParseAddr("160.79.104.10")},
			"github.com":        {netip.MustParseAddr("140.82.121.4"), netip.MustParseAddr("2606:50c0:8000::154")},
		},
		PID:   100,
		Alive: func(int) bool { return false },
	}
}

type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, ok := r[host]
	if !ok {
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	return a, nil
}

// fakeRunner records every call. failAt makes the n-th call (1-based) fail;
// failIf makes matching calls fail with the given output.
type fakeRunner struct {
	mu      sync.Mutex
	calls   []Command
	changes int // calls other than pgrep and pkill
	failAt  int // counts changes only
	// procs answers pgrep; nil: no process.
	procs  func(Command) ([]byte, error)
	failIf func(Command) ([]byte, bool)
}

func (f *fakeRunner) Run(_ context.Context, name string, args []string, stdin []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Command{Name: name, Args: append([]string(nil), args...), Stdin: stdin}
	f.calls = append(f.calls, c)
	if name != "pgrep" && name != "pkill" {
		f.changes++
	}
	if name == "pgrep" && f.procs != nil {
		return f.procs(c)
	}
	if f.changes == f.failAt && name != "pgrep" && name != "pkill" {
		return []byte("boom"), errors.New("exit status 1")
	}
	if f.failIf != nil {
		if out, bad := f.failIf(c); bad {
			return out, errors.New("exit status 1")
		}
	}
	if name == "pfctl" && len(args) == 1 && args[0] == "-E" {
		return []byte("No ALTQ support in kernel\npf enabled\nToken : 17368543127000\n"), nil
	}
	return nil, nil
}

// lines are the calls that change the system, one line each; the process
// listing and signalling around them are left out (allLines has them).
func (f *fakeRunner) lines() []string {
	var l []string
	for _, s := range f.allLines() {
		if !strings.HasPrefix(s, "pgrep ") && !strings.HasPrefix(s, "pkill ") {
			l = append(l, s)
		}
	}
	return l
}

func (f *fakeRunner) allLines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var l []string
	for _, c := range f.calls {
		l = append(l, strings.SplitN(c.String(), "\n", 2)[0])
	}
	return l
}

var errExit1 = errors.New("exit status 1")
