//go:build linux

package escape

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/api"
)

// TestEscapeForgedTrustEmbedded is TestEscapeForgedTrustStore for `sudo
// aigate run` with no agent running: the agent run starts inside itself
// takes the project's trust from root's records (as the service agent
// does), never from ~/.aigate/trusted.yaml, the user's own file. Inside an
// embedded run the sandbox forges a trust store for a project file that
// opens .env and the network, in two ways: `forge` writes
// ~/.aigate/trusted.yaml, `mv` moves ~/.aigate aside for a new directory
// holding a copy of the config and the forged store. Whatever the backend
// and the after-run restore made of that, the project file and the
// forgery are then planted from outside as well, as a write the backend
// missed (or a rename a killed run did not undo) would leave them. The next embedded run, without a terminal,
// does not trust the project: it is refused before the command starts
// (exit 4), naming the forged record and `sudo aigate trust`. `aigate
// trust` inside the sandbox fails, with the run's agent to ask and with
// none (it would record in root's directory itself). Trusted from outside
// (root, no agent running), the next run starts and reads .env.
func TestEscapeForgedTrustEmbedded(t *testing.T) {
	for _, route := range []string{"forge", "mv"} {
		t.Run(route, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b *box) { b.forgeTrustEmbedded(route) })
		})
	}
}

func (b *box) forgeTrustEmbedded(route string) {
	t := b.t
	trust := filepath.Join(t.TempDir(), "trust") // root's, as /var/lib/aigate/trust
	project := b.path(".aigate.yaml")
	forged := "trusted: [{path: " + project + ", sha256: " + sha256hex(loosening) + "}]\n"
	nowhere := filepath.Join(b.home, "no-agent.sock")

	// The attack, from inside an embedded run: `aigate trust` itself
	// (asking the run's agent, and with none to ask), then the forged
	// store. The project file only tightens yet (it needs no trust, so the
	// run starts); the loosening one is planted below (a sandbox's write
	// to .aigate.yaml is refused: deny_write).
	b.write(".aigate.yaml", "deny_read: [secrets]\n")
	attack := map[string]string{
		"forge": "printf '%[1]s' > ~/.aigate/trusted.yaml && echo FORGED",
		"mv": "mv ~/.aigate ~/.aigate-moved && mkdir ~/.aigate && cp ~/.aigate-moved/config.yaml ~/.aigate/ && " +
			"printf '%[1]s' > ~/.aigate/trusted.yaml && echo FORGED",
	}[route]
	script := fmt.Sprintf("%[2]s=%[3]s %[4]s trust --yes --trust-dir %[5]s; echo TRUST1 $?; "+
		"%[2]s=%[6]s %[4]s trust --yes --trust-dir %[5]s; echo TRUST2 $?; "+attack,
		forged, api.SocketEnv, b.embeddedSock(), machine.bin, trust, nowhere)
	r := b.embedded(trust, script)
	t.Logf("inside the first run (forged: %v):\n%s", strings.Contains(r.stdout, "FORGED"), r)
	if !strings.Contains(r.stdout, "TRUST2 ") || strings.Contains(r.stdout, "TRUST1 0") || strings.Contains(r.stdout, "TRUST2 0") {
		t.Errorf("aigate trust inside the sandbox did not fail:\n%s", r)
	}
	if data, _ := os.ReadFile(filepath.Join(trust, "0.yaml")); strings.Contains(string(data), "proj") {
		t.Fatalf("the sandbox trusted its project in root's records:\n%s", data)
	}

	// What got past the backend, planted from outside.
	b.write(".aigate.yaml", loosening)
	if route == "mv" {
		os.RemoveAll(b.path("~/.aigate-moved"))
		if err := os.Rename(b.path("~/.aigate"), b.path("~/.aigate-moved")); err != nil {
			t.Fatal(err)
		}
		b.write("~/.aigate/config.yaml", b.read("~/.aigate-moved/config.yaml"))
	}
	b.write("~/.aigate/trusted.yaml", forged)

	r = b.embedded(trust, "echo STARTED; cat .env")
	if strings.Contains(r.stdout, "STARTED") || strings.Contains(r.stdout, "sk-escape-test-secret") {
		t.Fatalf("the forged trust store made the project trusted: the command ran:\n%s", r)
	}
	for _, want := range []string{".aigate.yaml", "~/.aigate/trusted.yaml trusts it", "sudo aigate trust"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("run's refusal does not say %q:\n%s", want, r)
		}
	}
	if r.code != 4 {
		t.Errorf("run exited %d, want 4 (policy)", r.code)
	}
	t.Logf("the refusal:\n%s", r.stderr)

	// Trusted from outside (root, no agent running), the run starts.
	cmd := exec.Command(machine.bin, "trust", "--yes", "--trust-dir", trust)
	cmd.Dir, cmd.Env = b.proj, []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + b.home, "NO_COLOR=1", api.SocketEnv + "=" + nowhere}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "trusted ") {
		t.Fatalf("sudo aigate trust outside: %v\n%s", err, out)
	}
	if r := b.embedded(trust, "cat .env"); !strings.Contains(r.stdout, "sk-escape-test-secret") || r.code != 0 {
		t.Errorf("control: trusted from outside, the next embedded run could not read .env:\n%s", r)
	}
}
