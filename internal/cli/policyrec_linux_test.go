//go:build linux

package cli

import (
	"encoding/json"
	"fmt"
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

// TestTrustWithoutAgent: with no agent running, the project trust that an
// embedded `sudo aigate run` applies is root's records (--trust-dir), not
// ~/.aigate/trusted.yaml. A project trusted only in the user's store is
// untrusted in status, which says why; a user's `aigate trust` is told to
// use sudo and records nothing; root's records there (and status then
// shows it trusted); corrupt records refuse, naming the file.
func TestTrustWithoutAgent(t *testing.T) {
	testutil.RequireRoot(t)
	e := newSandboxEnv(t)
	t.Setenv(api.SocketEnv, filepath.Join(t.TempDir(), "none.sock"))
	records := filepath.Join(t.TempDir(), "trust")
	e.write(e.project(), "net: allow\n")
	e.ok("--trust-dir", "", "trust", "--yes") // the user's own store, as before root kept records
	if !strings.Contains(e.read(filepath.Join(e.home, ".aigate", "trusted.yaml")), e.project()) {
		t.Fatal("trust --trust-dir \"\" did not record in ~/.aigate/trusted.yaml")
	}
	status := func() (*Status, string) {
		t.Helper()
		out, errs, code := e.run("status", "--json", "--trust-dir", records)
		var st Status
		if err := json.Unmarshal([]byte(out), &st); err != nil || code != cmdutil.ExitOK {
			t.Fatalf("status: exit %d, %v\n%s\n%s", code, err, out, errs)
		}
		return &st, errs
	}
	st, errs := status()
	if st.Project.Trust != "untrusted" || !strings.Contains(errs, "~/.aigate/trusted.yaml") || !strings.Contains(errs, "sudo aigate trust") {
		t.Errorf("trusted only in ~/.aigate/trusted.yaml: status says %q; want untrusted, with a warning naming the store and `sudo aigate trust`:\n%s", st.Project.Trust, errs)
	}

	e.user = true
	if errs := e.fails(cmdutil.ExitError, "trust", "--yes", "--trust-dir", records); !strings.Contains(errs, "sudo aigate trust") || !strings.Contains(errs, records) {
		t.Errorf("a user with no agent: want told to use sudo, naming the records:\n%s", errs)
	}
	if _, err := os.Lstat(records); !os.IsNotExist(err) {
		t.Errorf("a user's refused trust created %s (%v)", records, err)
	}
	e.user = false

	if out := e.ok("trust", "--yes", "--trust-dir", records); !strings.Contains(out, "trusted ") {
		t.Errorf("root's trust with no agent:\n%s", out)
	}
	r := agent.AnswerTrust(records, uint32(os.Geteuid()), &api.TrustRequest{Action: api.TrustGet})
	if r.Error != nil || len(r.Trust.Entries) != 1 || r.Trust.Entries[0].Path != e.project() {
		t.Fatalf("root's trust recorded %+v (%v) in %s, want the project", r.Trust, r.Error, records)
	}
	if st, _ := status(); st.Project.Trust != "trusted" {
		t.Errorf("after root's trust, status says %q", st.Project.Trust)
	}

	e.write(filepath.Join(records, fmt.Sprintf("%d.yaml", os.Geteuid())), "trusted: [\n")
	if errs := e.fails(cmdutil.ExitError, "trust", "--yes", "--trust-dir", records); !strings.Contains(errs, "corrupt") || !strings.Contains(errs, records) {
		t.Errorf("corrupt records: want refused, naming the file:\n%s", errs)
	}
}
