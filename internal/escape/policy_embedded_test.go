//go:build linux

package escape

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestEscapePolicyLoosenedEmbedded is TestEscapePolicyLoosenedByHand for
// `sudo aigate run` with no agent running: the agent run starts inside
// itself keeps the policy last accepted in root's records too, so a
// ~/.aigate/config.yaml loosened behind aigate's back is noticed at the
// next run. Two routes: the file edited in place, and ~/.aigate moved
// aside for a forged directory (config and trust store). Both are made
// from outside here, as what got past the backend would leave them (a
// write fanotify missed; a rename the policy guard did not undo because
// the run was killed). The next run, without a terminal, is refused
// before the command starts, naming the file, what loosened and `sudo
// aigate policy accept`; `aigate policy accept` inside the sandbox fails;
// accepted from outside (root, no agent running), the run starts and
// reads .env.
func TestEscapePolicyLoosenedEmbedded(t *testing.T) {
	for _, route := range []string{"edit", "mv"} {
		t.Run(route, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b *box) { b.loosenEmbedded(route) })
		})
	}
}

func (b *box) loosenEmbedded(route string) {
	t := b.t
	trust := filepath.Join(t.TempDir(), "trust") // root's, as /var/lib/aigate/trust
	cfg := b.read("~/.aigate/config.yaml")
	loose := strings.Replace(cfg, "  - .env\n", "", 1)
	if loose == cfg {
		t.Fatal("the defaults no longer list .env as this test expects")
	}
	b.write("loose.yaml", loose)

	// The first run records the policy without asking; .env is denied.
	// From inside it, `aigate policy accept` fails, with the run's agent
	// to ask and with none (it would record in root's directory itself).
	// (A raw client asking the run's agent is refused as the service
	// agent refuses it, TestEscapePolicyLoosenedByHand; it is not tried
	// here: the command runs as root, and allow_unix on the fanotify
	// backend refuses a socket in a directory root can write.) One run
	// for both: each embedded run on lsm loads the BPF programs afresh,
	// ~20 s in the 6.12 guest.
	nowhere := filepath.Join(b.home, "no-agent.sock")
	r := b.embedded(trust, fmt.Sprintf("echo STARTED; cat .env; "+
		"%[1]s=%[2]s %[3]s policy accept --yes --trust-dir %[4]s; echo ACCEPT1 $?; "+
		"%[1]s=%[5]s %[3]s policy accept --yes --trust-dir %[4]s; echo ACCEPT2 $?",
		api.SocketEnv, b.embeddedSock(), machine.bin, trust, nowhere))
	if !strings.Contains(r.stdout, "STARTED") || strings.Contains(r.stdout, "sk-escape-test-secret") {
		t.Fatalf("first embedded run: want it to start and be denied .env:\n%s", r)
	}
	if fi, err := os.Lstat(trust); err != nil || !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("the embedded run kept no root-owned records in %s: %v", trust, err)
	}
	if !strings.Contains(r.stdout, "ACCEPT2 ") || strings.Contains(r.stdout, "ACCEPT1 0") || strings.Contains(r.stdout, "ACCEPT2 0") {
		t.Errorf("aigate policy accept inside the sandbox did not fail:\n%s", r)
	}

	// The loosening gets past the backend.
	switch route {
	case "edit":
		b.write("~/.aigate/config.yaml", loose)
	case "mv":
		if err := os.Rename(b.path("~/.aigate"), b.path("~/.aigate-moved")); err != nil {
			t.Fatal(err)
		}
		b.write("~/.aigate/config.yaml", loose)
		b.write("~/.aigate/trusted.yaml", "entries: []\n")
	}
	r = b.embedded(trust, "echo STARTED; cat .env")
	if strings.Contains(r.stdout, "STARTED") || strings.Contains(r.stdout, "sk-escape-test-secret") {
		t.Fatalf("the loosened policy was not refused: the command ran:\n%s", r)
	}
	for _, want := range []string{"~/.aigate/config.yaml", `deny_read ".env" removed`, "sudo aigate policy accept"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("run's refusal does not say %q:\n%s", want, r)
		}
	}
	if r.code != 4 {
		t.Errorf("run exited %d, want 4 (policy)", r.code)
	}
	t.Logf("the refusal:\n%s", r.stderr)

	// Accepted from outside (root, no agent running), the run starts.
	accept := exec.Command(machine.bin, "policy", "accept", "--yes", "--trust-dir", trust)
	accept.Dir, accept.Env = b.proj, []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + b.home, "NO_COLOR=1", api.SocketEnv + "=" + nowhere}
	if out, err := accept.CombinedOutput(); err != nil || !strings.Contains(string(out), `deny_read ".env" removed`) {
		t.Fatalf("sudo aigate policy accept: %v; want it to show what it accepts:\n%s", err, out)
	}
	if r := b.embedded(trust, "cat .env"); !strings.Contains(r.stdout, "sk-escape-test-secret") || r.code != 0 {
		t.Errorf("control: accepted from outside, the next embedded run could not read .env:\n%s", r)
	}
}

// embedded runs `sudo aigate run -- sh -c script` with no agent running:
// run starts its own, keeping records in trust. It runs as root with the
// box's home (not --user, whose home is the user database's, shared by
// every box), without a terminal.
func (b *box) embedded(trust, script string) result {
	b.t.Helper()
	os.Remove(b.events)
	cmd := exec.Command(machine.bin, "run", "--backend", b.backend, "--metrics-addr", "", "--socket", b.embeddedSock(),
		"--trust-dir", trust, "--events", b.events, "--", "sh", "-c", script)
	cmd.Dir = b.proj
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + b.home, "NO_COLOR=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code, err := e2e.ExitCode(e2e.RunBounded(cmd, runLimit))
	if err != nil {
		b.t.Fatalf("aigate run: %v\n%s", err, stderr.String())
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String(), events: b.readEvents()}
}

// embeddedSock is where the embedded agent listens: in root's directory
// (the agent refuses a socket in someone else's).
func (b *box) embeddedSock() string {
	return filepath.Join(machine.dir, "emb-"+filepath.Base(b.home)+".sock")
}
