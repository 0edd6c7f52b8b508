//go:build linux

package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestPolicyRecordAcceptInsideRefused: the agent refuses a sandbox whose
// global policy allows more than the one last accepted, and accepts a
// looser one only from a process outside every sandbox. A process inside
// a sandbox asking to accept it is refused, nothing is recorded, and the
// next sandbox is still refused; the same request from outside is
// accepted and the sandbox is created.
func TestPolicyRecordAcceptInsideRefused(t *testing.T) {
	testutil.HostOnly(t)
	records := filepath.Join(t.TempDir(), "trust")
	ta := startAgentWith(t, "", "", func(c *Config) { c.TrustDir = records })
	ctx := context.Background()
	home := t.TempDir()
	path := filepath.Join(home, ".aigate", "config.yaml")
	strict, loose := "deny_read: [.env]\nnet: deny\n", "deny_read: []\nnet: deny\n"
	req := func(content string) api.CreateRequest {
		return api.CreateRequest{Global: &api.File{Path: path, Data: []byte(content)}, Home: home, ProjectRoot: home}
	}
	refused := func(what string, err error) {
		t.Helper()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodePolicy || !strings.Contains(ae.Message, `deny_read ".env" removed`) ||
			!strings.Contains(ae.Message, "~/.aigate/config.yaml") || !strings.Contains(ae.Message, "aigate policy accept") {
			t.Fatalf("%s: want the loosened policy refused, naming the file, the rule and `aigate policy accept`; got %v", what, err)
		}
	}

	// First use records; the sandbox runs a client that asks to accept
	// the looser file from inside.
	s, err := ta.client.CreateSandbox(ctx, req(strict))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(os.Args[0], home, path, loose)
	cmd.Env = append(os.Environ(), clientEnv+"=policyaccept", "AIGATE_AGENT_TEST_SOCKET="+ta.Socket())
	cmd.Stdout, cmd.Stderr = &out, &out
	child, err := launch.Start(s, cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Signal(syscall.SIGKILL) })
	if code, err := child.Wait(); err != nil || code != 0 {
		t.Fatalf("client inside: exit %d, %v\n%s", code, err, out.String())
	}
	s.Close()
	if got := strings.TrimSpace(out.String()); got != api.CodeForbidden {
		t.Errorf("accept from inside a sandbox: %q, want %s", got, api.CodeForbidden)
	}
	_, err = ta.client.CreateSandbox(ctx, req(loose))
	refused("after the refused accept", err)
	st, err := ta.client.Policy(ctx, api.PolicyRequest{Action: api.PolicyCheck, Home: home, Global: req(loose).Global})
	if err != nil || !st.Held || !st.Recorded || len(st.Loosened) != 1 {
		t.Errorf("check: %+v, %v; want the record held and one loosening", st, err)
	}

	// An edit that accepts its own change must not accept one made
	// before it.
	_, err = ta.client.Policy(ctx, api.PolicyRequest{Action: api.PolicyAccept, Home: home, Edit: true,
		Base: req(loose).Global, Global: req(loose + "deny_write: [x]\n").Global})
	refused("an edit of a loosened file", err)

	// Control: from outside, accepted; then the sandbox is created.
	if st, err := ta.client.Policy(ctx, api.PolicyRequest{Action: api.PolicyAccept, Home: home, Global: req(loose).Global}); err != nil || len(st.Loosened) != 1 {
		t.Fatalf("accept from outside: %+v, %v", st, err)
	}
	s, err = ta.client.CreateSandbox(ctx, req(loose))
	if err != nil {
		t.Fatalf("after the accept from outside: %v", err)
	}
	s.Close()
	// Tightening is recorded silently: loosening back is refused again.
	if s, err = ta.client.CreateSandbox(ctx, req(strict)); err != nil {
		t.Fatalf("tighter: %v", err)
	}
	s.Close()
	_, err = ta.client.CreateSandbox(ctx, req(loose))
	refused("loosened again after a tighter run", err)
	fi, err := os.Stat(filepath.Join(records, "0.policy.yaml"))
	if err != nil || fi.Mode().Perm() != 0o644 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("policy records: %v, %v; want root's 0644 file", fi, err)
	}
}
