//go:build linux

package escape

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeTrustFromInside: the sandboxed tool cannot trust a project file
// that opens the network for its next run: `aigate trust` and `aigate allow`
// refuse to run inside a sandbox (no kernel event: aigate itself refuses),
// and writing the trust store directly is refused with a write event.
func TestEscapeTrustFromInside(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.write(".aigate.yaml", "net: allow\n")
		r := b.sh(fmt.Sprintf("%[1]s trust --yes; %[1]s allow net evil-escape.test; echo 'trusted: []' > ~/.aigate/trusted.yaml", machine.bin))
		if !strings.Contains(r.stderr+r.stdout, "cannot run inside an aigate sandbox") {
			t.Errorf("trust inside was not refused:\n%s", r)
		}
		if strings.Contains(b.read("~/.aigate/trusted.yaml"), "sha256") || strings.Contains(b.read("~/.aigate/config.yaml"), "evil-escape.test") {
			t.Errorf("the policy was loosened from inside:\n%s", r)
		}
		if _, ok := r.denied(events.OpWrite, filepath.Join(b.home, ".aigate")); !ok {
			t.Errorf("no write event for ~/.aigate/trusted.yaml:\n%s", r)
		}
		// Control: outside, the same command works; the agent records it.
		if out, err := b.outsideRun(machine.bin + " trust --yes"); err != nil || !strings.Contains(b.read(b.trustRecords()), sha256hex("net: allow\n")) {
			t.Errorf("trust outside failed: %v\n%s", err, out)
		}
	})
}

// TestEscapeMoveAigateDir: replacing ~/.aigate by a forged directory (the
// forgery is prepared elsewhere, then renamed in: no open in a protected
// path) would make the next run trusted and network-open.
//
//   - lsm: the rename is refused in the kernel, with a write event.
//   - fanotify: no permission event exists for renames, so the move goes
//     through (the directory watcher usually reports it and kills the
//     sandbox, after the fact); the agent's sweep of ~/.aigate after the
//     kill (internal/fanotify/sweep.go) moves a forged file aside (event
//     op planted), and aigate run notices what is still changed once the
//     sandbox is gone, puts the directory's files back, keeps the forgery
//     aside and warns. The next run enforces the user's policy.
//
// The same holds for a forged trusted.yaml renamed over the real one.
func TestEscapeMoveAigateDir(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.write(".aigate.yaml", "net: allow\nallow_read: [.env]\n")
		b.write("~/work/forged/config.yaml", "net: allow\n")
		b.write("~/work/forged/trusted.yaml", "trusted: [{path: "+b.path(".aigate.yaml")+", sha256: "+sha256hex("net: allow\nallow_read: [.env]\n")+"}]\n")
		b.write("~/work/trusted.yaml", "trusted: [{path: "+b.path(".aigate.yaml")+", sha256: "+sha256hex("net: allow\nallow_read: [.env]\n")+"}]\n")
		original := b.read("~/.aigate/config.yaml")
		for _, attack := range []string{
			"mv ~/.aigate ~/.aigate-old && mv ~/work/forged ~/.aigate && echo moved",
			"mv ~/work/trusted.yaml ~/.aigate/trusted.yaml && echo moved",
		} {
			r := b.sh(attack)
			moved := strings.Contains(r.stdout, "moved")
			switch b.backend {
			case "lsm":
				if moved {
					t.Fatalf("%s: ~/.aigate was changed:\n%s", attack, r)
				}
				if _, ok := r.denied(events.OpWrite, filepath.Join(b.home, ".aigate")); !ok {
					t.Errorf("%s: no write event for ~/.aigate:\n%s", attack, r)
				}
			case "fanotify":
				// The move is seen after the fact: usually reported as a
				// write with the sandbox killed (TestEscapeReplaceAncestor),
				// not always for a short mv; the restore does not depend on it.
				_, seen := r.denied(events.OpRename, filepath.Join(b.home, ".aigate"))
				_, swept := r.denied(events.OpPlanted, filepath.Join(b.home, ".aigate"))
				t.Logf("%s: moved %v, reported %v, swept %v", attack, moved, seen, swept)
				// changed, or disappeared when the kill came between the
				// moves; or a forged file the sweep already moved aside
				if !strings.Contains(r.stderr, "while the sandbox ran") && !swept {
					t.Errorf("%s: no warning:\n%s", attack, r)
				}
			}
			if got := b.read("~/.aigate/config.yaml"); got != original {
				t.Errorf("%s: after the run, config.yaml is %q", attack, got)
			}
			if strings.Contains(b.read("~/.aigate/trusted.yaml"), "sha256") {
				t.Errorf("%s: after the run, the forged trust store is in place", attack)
			}
			// The next run enforces the user's policy.
			next := b.sh("cat .env")
			if strings.Contains(next.stdout, "sk-escape-test-secret") {
				t.Fatalf("%s: the next run read .env:\n%s", attack, next)
			}
		}
	})
}

// trustRecords is the file where the box's agent keeps the user's trust.
func (b *box) trustRecords() string {
	return filepath.Join(machine.dir, "trust-"+b.backend, strconv.FormatUint(uint64(machine.uid), 10)+".yaml")
}

// loosening is a project file that, trusted, opens the network and .env.
const loosening = "net: allow\nallow_read: [.env]\n"

// TestEscapeAgentTrustFromInside: the trust records are the agent's, and
// the agent changes them only for a process outside every sandbox. A raw
// client inside the sandbox (the socket reachable: allow_unix) asks the
// agent to trust a project file that opens .env for the next run: refused,
// nothing recorded, and the next run still cannot read .env. The control
// asks the same from outside: accepted, recorded in a root-owned 0644 file
// the user cannot write, and the next run reads .env.
func TestEscapeAgentTrustFromInside(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.config(b.read("~/.aigate/config.yaml") + "\nallow_unix:\n  - " + b.agent.sock + "\n")
		project := b.write(".aigate.yaml", loosening)
		fields := strings.Join([]string{"trust", b.agent.sock, b.home, b.proj, "set", project, sha256hex(loosening)}, " ")
		r := b.run(nil, "env", clientEnv+"="+fields, clientBinary(t))
		if !strings.Contains(r.stdout, "refused forbidden") || !strings.Contains(r.stdout, "inside a sandbox") {
			t.Errorf("the agent did not refuse trust from inside the sandbox:\n%s", r)
		}
		if strings.Contains(b.read(b.trustRecords()), sha256hex(loosening)) {
			t.Errorf("the agent recorded trust asked from inside:\n%s", b.read(b.trustRecords()))
		}
		if next := b.sh("cat .env"); strings.Contains(next.stdout, "sk-escape-test-secret") {
			t.Fatalf("after the refused trust, the next run read .env:\n%s", next)
		}

		// Control: from outside, the same request is accepted.
		if got := b.client("trust", "set", project, sha256hex(loosening)); !strings.HasPrefix(got, "ok held true") {
			t.Fatalf("trust from outside: %s", got)
		}
		fi, err := os.Stat(b.trustRecords())
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o644 {
			t.Errorf("trust records %s: uid %d mode %v, want root's 0644", b.trustRecords(), st.Uid, fi.Mode().Perm())
		}
		if next := b.sh("cat .env"); !strings.Contains(next.stdout, "sk-escape-test-secret") {
			t.Errorf("control: trusted from outside, the next run could not read .env:\n%s", next)
		}
		// Not even the user outside any sandbox can write them.
		for _, script := range []string{
			"echo 'trusted: []' >> " + b.trustRecords(),
			"touch " + filepath.Join(filepath.Dir(b.trustRecords()), "x"),
		} {
			if out, err := b.outsideRun(script); err == nil {
				t.Errorf("the user could write the trust records: %s\n%s", script, out)
			}
		}
	})
}

// TestEscapeForgedTrustStore: with an agent that keeps trust records, a
// forged ~/.aigate/trusted.yaml (a sandbox's forgery that survived, or one
// from before the agent kept records) has no effect: the next run does not
// read .env, and says the project needs `aigate trust` again (it is not
// imported). The agent decides on its own records even for a client that
// claims the file is trusted.
func TestEscapeForgedTrustStore(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		project := b.write(".aigate.yaml", loosening)
		b.write("~/.aigate/trusted.yaml", "trusted: [{path: "+project+", sha256: "+sha256hex(loosening)+"}]\n")
		r := b.sh("cat .env")
		if strings.Contains(r.stdout, "sk-escape-test-secret") {
			t.Fatalf("the forged trust store made the project trusted:\n%s", r)
		}
		if !strings.Contains(r.stderr, "run `aigate trust` again") {
			t.Errorf("run did not say the project needs `aigate trust` again:\n%s", r)
		}
		// status shows the trust a run applies, not the forged one.
		if out, _ := b.outsideRun(machine.bin + " status"); !strings.Contains(out, "(untrusted") {
			t.Errorf("status does not show the project as untrusted:\n%s", out)
		}
		// A client that claims trust itself is not believed either.
		if got := b.client("createtrusted", project); !strings.Contains(got, "not trusted") {
			t.Errorf("the agent took the client's word that the project is trusted: %s", got)
		}
	})
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
