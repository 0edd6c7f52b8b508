//go:build linux

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestPolicyAcceptWithoutAgent: with no agent running, root's `aigate
// policy accept` records in the directory an embedded `sudo aigate run`
// compares with, as the agent would: without a terminal a loosening is
// accepted only with --yes, and then the record holds it. A user without
// root is told to use sudo, and nothing is recorded.
func TestPolicyAcceptWithoutAgent(t *testing.T) {
	testutil.RequireRoot(t)
	e := newSandboxEnv(t)
	t.Setenv(api.SocketEnv, filepath.Join(t.TempDir(), "none.sock"))
	records := filepath.Join(t.TempDir(), "trust")
	strict, loose := "deny_read: [.env]\nnet: deny\n", "deny_read: []\nnet: deny\n"
	check := func() *api.PolicyState {
		t.Helper()
		r := agent.AnswerPolicy(records, 0, &api.PolicyRequest{Action: api.PolicyCheck, Home: e.home,
			Global: &api.File{Path: e.global(), Data: []byte(e.read(e.global()))}})
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		return r.Policy
	}

	e.write(e.global(), strict)
	// A check (status) creates nothing.
	if st := check(); st.Recorded {
		t.Fatalf("a record before any accept: %+v", st)
	}
	if _, err := os.Lstat(records); !os.IsNotExist(err) {
		t.Errorf("a check created %s (%v)", records, err)
	}
	e.ok("policy", "accept", "--trust-dir", records)
	if st := check(); !st.Recorded {
		t.Fatalf("policy accept with no agent recorded nothing in %s: %+v", records, st)
	}
	e.write(e.global(), loose)
	if errs := e.fails(cmdutil.ExitError, "policy", "accept", "--trust-dir", records); !strings.Contains(errs, "--yes") {
		t.Errorf("no terminal, no --yes: want refused, naming --yes:\n%s", errs)
	}
	if st := check(); len(st.Loosened) != 1 {
		t.Fatalf("refused, yet the loosening was recorded: %+v", st)
	}
	e.user = true
	if errs := e.fails(cmdutil.ExitError, "policy", "accept", "--yes", "--trust-dir", records); !strings.Contains(errs, "sudo aigate policy accept") {
		t.Errorf("a user with no agent: want told to use sudo:\n%s", errs)
	}
	e.user = false
	if out := e.ok("policy", "accept", "--yes", "--trust-dir", records); !strings.Contains(out, `deny_read ".env" removed`) {
		t.Errorf("policy accept --yes did not show what it accepts:\n%s", out)
	}
	if st := check(); !st.Recorded || len(st.Loosened) != 0 {
		t.Errorf("after policy accept --yes: %+v, want the looser file recorded", st)
	}
}

// TestEditCommandsTrustDirWithoutAgent: with no agent running, root's init
// and deny record their own change in the --trust-dir given (the hidden
// flag every command takes), where `aigate run --trust-dir` compares, and
// in no other directory.
func TestEditCommandsTrustDirWithoutAgent(t *testing.T) {
	testutil.RequireRoot(t)
	e := newSandboxEnv(t)
	t.Setenv(api.SocketEnv, filepath.Join(t.TempDir(), "none.sock"))
	records := filepath.Join(t.TempDir(), "trust")
	check := func() *api.PolicyState {
		t.Helper()
		r := agent.AnswerPolicy(records, 0, &api.PolicyRequest{Action: api.PolicyCheck, Home: e.home,
			Global: &api.File{Path: e.global(), Data: []byte(e.read(e.global()))}})
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		return r.Policy
	}
	os.Remove(e.global())
	e.ok("init", "--trust-dir", records)
	if st := check(); !st.Recorded || len(st.Loosened) != 0 {
		t.Fatalf("init --trust-dir with no agent: %+v, want its file recorded in %s", st, records)
	}
	e.ok("deny", "read", "extra-secret", "--trust-dir", records)
	e.ok("allow", "read", "extra-secret", "--trust-dir", records)
	if st := check(); len(st.Loosened) != 0 {
		t.Errorf("allow --trust-dir with no agent: %+v, want its own change recorded", st)
	}
}
