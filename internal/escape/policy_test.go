//go:build linux

package escape

import (
	"strings"
	"testing"
)

// TestEscapePolicyLoosenedByHand: ~/.aigate/config.yaml changed behind
// aigate's back so that it no longer denies .env: by hand, or by a sandbox
// through a route the backend missed (fanotify's short mv; simulated here
// by writing the file from outside, which nothing refuses). The agent
// keeps the policy last accepted, so the next run is refused before the
// command starts, naming the file and the removed rule and saying how to
// accept it; `status` says the same. The sandbox cannot accept it for
// itself: a raw client inside asking the agent is refused; nor does the
// user's next `aigate deny` accept what it found. Accepted from outside
// (`aigate policy accept`), the run starts and reads .env; `aigate allow`
// accepts its own change.
func TestEscapePolicyLoosenedByHand(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		cfg := b.read("~/.aigate/config.yaml") + "\nallow_unix:\n  - " + b.agent.sock + "\n"
		b.config(cfg)
		loose := strings.Replace(cfg, "  - .env\n", "", 1)
		if loose == cfg {
			t.Fatal("the defaults no longer list .env as this test expects")
		}
		b.write("loose.yaml", loose)
		if r := b.sh("cat .env"); strings.Contains(r.stdout, "sk-escape-test-secret") {
			t.Fatalf("the accepted policy let .env be read:\n%s", r)
		}

		// From inside, the agent is asked to accept the looser file.
		fields := strings.Join([]string{"policyaccept", b.agent.sock, b.home, b.proj, b.path("~/.aigate/config.yaml"), b.path("loose.yaml")}, " ")
		r := b.run(nil, "env", clientEnv+"="+fields, clientBinary(t))
		if !strings.Contains(r.stdout, "refused forbidden") || !strings.Contains(r.stdout, "inside a sandbox") {
			t.Errorf("the agent did not refuse to accept the policy from inside the sandbox:\n%s", r)
		}

		// The file is loosened behind aigate's back.
		b.write("~/.aigate/config.yaml", loose)
		r = b.sh("echo STARTED; cat .env")
		if strings.Contains(r.stdout, "STARTED") || strings.Contains(r.stdout, "sk-escape-test-secret") {
			t.Fatalf("the loosened policy was not refused: the command ran:\n%s", r)
		}
		for _, want := range []string{"~/.aigate/config.yaml", `deny_read ".env" removed`, "aigate policy accept"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("run's refusal does not say %q:\n%s", want, r)
			}
		}
		t.Logf("the refusal:\n%s", r.stderr)
		if r.code != 4 {
			t.Errorf("run exited %d, want 4 (policy)", r.code)
		}
		if out, _ := b.outsideRun(machine.bin + " status"); !strings.Contains(out, `deny_read ".env" removed`) {
			t.Errorf("status does not show the unaccepted loosening:\n%s", out)
		}

		// The user's next `aigate deny` accepts its own change, not the
		// loosening it found.
		if out := b.aigate("deny", "read", "extra-secret"); !strings.Contains(out, "did not accept") {
			t.Errorf("aigate deny on a loosened file did not say it was not accepted:\n%s", out)
		}
		if r := b.sh("echo STARTED"); strings.Contains(r.stdout, "STARTED") {
			t.Fatalf("aigate deny accepted the loosening it found:\n%s", r)
		}

		// Control: accepted from outside, the run starts and reads .env.
		if out := b.aigate("policy", "accept", "--yes"); !strings.Contains(out, `deny_read ".env" removed`) {
			t.Errorf("policy accept did not show what it accepted:\n%s", out)
		}
		if r := b.sh("cat .env"); !strings.Contains(r.stdout, "sk-escape-test-secret") {
			t.Errorf("control: accepted from outside, the next run could not read .env:\n%s", r)
		}
		// A command's own loosening is accepted by the command.
		b.aigate("deny", "read", ".env")
		b.aigate("allow", "read", ".env")
		if r := b.sh("cat .env"); !strings.Contains(r.stdout, "sk-escape-test-secret") {
			t.Errorf("control: after aigate allow read .env, the next run could not read .env:\n%s", r)
		}
	})
}
