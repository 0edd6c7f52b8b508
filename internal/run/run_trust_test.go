//go:build linux

package run

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/policy"
)

// trustEnv is a run environment with a project file that loosens the
// policy (net: allow), trusted in the user's own ~/.aigate/trusted.yaml
// (a record from before, or a sandbox's forgery), and root's records in a
// directory of the test's.
type trustEnv struct {
	*runEnv
	records string
	project string
	marker  string
}

const netAllow = "net: allow\n"

func newTrustEnv(t *testing.T, euid int) *trustEnv {
	e := &trustEnv{runEnv: newRunEnv(t, euid), records: filepath.Join(t.TempDir(), "trust")}
	e.project = filepath.Join(e.proj, ".aigate.yaml")
	e.marker = filepath.Join(e.proj, "started")
	if err := os.WriteFile(e.project, []byte(netAllow), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(netAllow))
	store := "trusted:\n  - path: " + e.project + "\n    sha256: " + hex.EncodeToString(sum[:]) + "\n"
	if err := os.MkdirAll(filepath.Join(e.home, ".aigate"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.home, ".aigate", "trusted.yaml"), []byte(store), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs `aigate run -- touch marker` with the records in dir, on a
// terminal or not, answering answer; it returns the exit code, what was
// said, whether the command ran, and the net mode the sandbox got.
func (e *trustEnv) run(t *testing.T, dir string, tty bool, answer string) (cmdutil.ExitCode, string, bool, policy.NetMode) {
	t.Helper()
	os.Remove(e.marker)
	e.answer(t, tty, answer)
	be := newRunFake()
	code, msg := e.runEnv.run(t, &runOptions{TrustDir: dir, Args: []string{"touch", e.marker}}, be, nil)
	_, err := os.Stat(e.marker)
	var net policy.NetMode
	be.mu.Lock()
	if len(be.nets) > 0 {
		net = be.nets[0]
	}
	be.mu.Unlock()
	return code, msg + "\n" + e.out.String(), err == nil, net
}

// TestRunProjectTrustEmbedded: an embedded `sudo aigate run` takes the
// project's trust from root's records, not from ~/.aigate/trusted.yaml,
// which is the user's file (a sandbox that got a write past the backend
// could have forged it). A project trusted only there is not trusted:
// without a terminal the run is refused before the command starts (exit
// 4), naming the loosening, the local record and `sudo aigate trust`; on
// a terminal it is shown and asked about: "n" runs with its loosening
// ignored, "y" records it in root's records and runs with it, and the
// next run (a script) applies it without asking. A change to the file
// un-trusts it again.
func TestRunProjectTrustEmbedded(t *testing.T) {
	e := newTrustEnv(t, 0)
	e.requireCgroup(t)

	code, out, ran, _ := e.run(t, e.records, false, "")
	if code != cmdutil.ExitPolicy || ran {
		t.Fatalf("no terminal: exit %d, ran %v; want refused (%d) before the command starts:\n%s", code, ran, cmdutil.ExitPolicy, out)
	}
	for _, want := range []string{".aigate.yaml", "net: deny → allow", "~/.aigate/trusted.yaml trusts it", "sudo aigate trust", e.records} {
		if !strings.Contains(out, want) {
			t.Errorf("no terminal: the refusal does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "[y/N]") {
		t.Errorf("no terminal, yet the run asked:\n%s", out)
	}

	code, out, ran, net := e.run(t, e.records, true, "n\n")
	if code != cmdutil.ExitOK || !ran || net != policy.NetDeny || !strings.Contains(out, "Trust ~/proj/.aigate.yaml as shown and run? [y/N]") ||
		!strings.Contains(out, "   1  net: allow") || !strings.Contains(out, "loosening entries are ignored") {
		t.Fatalf("terminal, answer n: exit %d, ran %v, net %q; want the file shown, asked, then run with net: deny:\n%s", code, ran, net, out)
	}

	code, out, ran, net = e.run(t, e.records, true, "y\n")
	if code != cmdutil.ExitOK || !ran || net != policy.NetAllow {
		t.Fatalf("terminal, answer y: exit %d, ran %v, net %q; want trusted and run with net: allow:\n%s", code, ran, net, out)
	}
	rec, err := os.ReadFile(filepath.Join(e.records, "0.yaml"))
	if err != nil || !strings.Contains(string(rec), e.project) {
		t.Fatalf("the trust was not recorded in root's records: %v\n%s", err, rec)
	}
	if code, out, ran, net := e.run(t, e.records, false, ""); code != cmdutil.ExitOK || !ran || net != policy.NetAllow || strings.Contains(out, "trust") {
		t.Fatalf("after trusting on the terminal, a script: exit %d, ran %v, net %q; want run trusted, silently:\n%s", code, ran, net, out)
	}

	if err := os.WriteFile(e.project, []byte(netAllow+"# changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, ran, _ := e.run(t, e.records, false, ""); code != cmdutil.ExitPolicy || ran || !strings.Contains(out, "changed since you trusted it") {
		t.Fatalf("changed file, no terminal: exit %d, ran %v; want refused, saying it changed:\n%s", code, ran, out)
	}
}

// TestRunProjectTrustNoRecords: with --trust-dir "" the embedded agent
// keeps no records, and ~/.aigate/trusted.yaml, the user's own file,
// decides, as before root kept records; run says so when it trusts a
// project by it.
func TestRunProjectTrustNoRecords(t *testing.T) {
	e := newTrustEnv(t, 0)
	e.requireCgroup(t)
	code, out, ran, net := e.run(t, "", false, "")
	if code != cmdutil.ExitOK || !ran || net != policy.NetAllow || !strings.Contains(out, `--trust-dir ""`) || !strings.Contains(out, "~/.aigate/trusted.yaml") {
		t.Fatalf("--trust-dir \"\": exit %d, ran %v, net %q; want trusted by ~/.aigate/trusted.yaml, saying so:\n%s", code, ran, net, out)
	}
}

// TestRunProjectTrustNotRoot: a user without sudo and without an agent
// cannot run at all; the untrusted project is not asked about first (the
// answer could not be recorded), and the refusal says what to do.
func TestRunProjectTrustNotRoot(t *testing.T) {
	e := newTrustEnv(t, 1000)
	code, out, ran, _ := e.run(t, e.records, true, "y\n")
	if code != cmdutil.ExitNoEnforcement || ran || !strings.Contains(out, "sudo aigate setup") || strings.Contains(out, "[y/N]") {
		t.Fatalf("not root, no agent: exit %d, ran %v; want %d naming `sudo aigate setup`, nothing asked:\n%s", code, ran, cmdutil.ExitNoEnforcement, out)
	}
}

// TestRunTrustRecordsCorruptRefused: corrupt trust records fail closed:
// the run is refused before the command starts, naming the file and what
// to do.
func TestRunTrustRecordsCorruptRefused(t *testing.T) {
	e := newTrustEnv(t, 0)
	e.requireCgroup(t)
	if err := os.Mkdir(e.records, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.records, "0.yaml"), []byte("trusted: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, ran, _ := e.run(t, e.records, true, "y\n")
	if code != cmdutil.ExitPolicy || ran {
		t.Fatalf("corrupt records: exit %d, ran %v; want refused (%d):\n%s", code, ran, cmdutil.ExitPolicy, out)
	}
	for _, want := range []string{filepath.Join(e.records, "0.yaml"), "corrupt", "remove the file"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
}
