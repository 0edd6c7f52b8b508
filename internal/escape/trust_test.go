//go:build linux

package escape

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
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
		// Control: outside, the same command works.
		if out, err := b.outsideRun(machine.bin + " trust --yes"); err != nil || !strings.Contains(b.read("~/.aigate/trusted.yaml"), "sha256") {
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
//     sandbox, after the fact); aigate run notices once the sandbox is gone, puts the
//     directory's files back, keeps the forgery aside and warns. The next
//     run enforces the user's policy.
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
				t.Logf("%s: moved %v, reported %v", attack, moved, seen)
				if !strings.Contains(r.stderr, "while the sandbox ran") { // changed, or disappeared when the kill came between the moves
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

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
