package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// TestE2EConfigCommands builds the real binary and runs the first commands
// a new user types, with nothing but a temporary HOME. It needs no root.
func TestE2EConfigCommands(t *testing.T) {
	if testing.Short() {
		// skip-ok: -short, which CI does not pass.
		t.Skip("builds the aigate binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "aigate")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/aigate-dev/aigate/internal/cmdutil.Version=v0.0.0-e2e -X github.com/aigate-dev/aigate/internal/cmdutil.Commit=e2e", "-o", bin, "../../cmd/aigate")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build aigate: %v\n%s", err, out)
	}
	home, proj := filepath.Join(dir, "home"), filepath.Join(dir, "proj")
	for _, d := range []string{home, proj} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SUDO_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "AIGATE_") {
			env = append(env, kv)
		}
	}
	// Never the machine's agent or its policy records: as root with no
	// agent, init and deny record the accepted policy in --trust-dir.
	trust := filepath.Join(dir, "trust")
	if err := os.Mkdir(trust, 0o700); err != nil {
		t.Fatal(err)
	}
	env = append(env, "HOME="+home, "AIGATE_SOCKET="+filepath.Join(dir, "aigate.sock")) // api.SocketEnv, Linux only

	aigate := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, append(args, "--trust-dir", trust)...)
		cmd.Dir, cmd.Env = proj, env
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run aigate %v: %v", args, err)
		}
		return string(out), code
	}

	if out, code := aigate("init"); code != 0 || !strings.Contains(out, "wrote ~/.aigate/config.yaml") {
		t.Fatalf("init: exit %d\n%s", code, out)
	}
	if out, code := aigate("deny", "read", "foo"); code != 0 || !strings.Contains(out, "deny_read += foo") {
		t.Fatalf("deny read foo: exit %d\n%s", code, out)
	}
	out, code := aigate("status")
	if code != 0 || !strings.Contains(out, "  foo ") || !strings.Contains(out, "~/.aigate/config.yaml:51") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	out, code = aigate("status", "--json")
	var st Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || !hasRule(st.DenyRead, "foo") {
		t.Fatalf("status --json: exit %d, %v\n%s", code, err, out)
	}
	if out, code := aigate("deny", "raed", "foo"); code != int(cmdutil.ExitUsage) || !strings.HasPrefix(out, "aigate: ") {
		t.Errorf("usage error: exit %d\n%s", code, out)
	}
	if out, _ := aigate("version"); !strings.HasPrefix(out, "aigate v0.0.0-e2e\ncommit e2e\n") {
		t.Errorf("version with -ldflags -X:\n%s", out)
	}
}
