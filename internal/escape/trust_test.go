//go:build linux

package escape

import (
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
		r := b.sh(fmt.Sprintf("%[1]s trust; %[1]s allow net evil-escape.test; echo 'trusted: []' > ~/.aigate/trusted.yaml", machine.bin))
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
		if out, err := b.outsideRun(machine.bin + " trust"); err != nil || !strings.Contains(b.read("~/.aigate/trusted.yaml"), "sha256") {
			t.Errorf("trust outside failed: %v\n%s", err, out)
		}
	})
}

// TestEscapeMoveAigateDir: `mv ~/.aigate ~/.aigate-old` and a forged
// directory would make the next run trusted and network-open. The LSM
// backend refuses the rename (a deny_write path itself) with an event. The
// fanotify backend has no rename permission event: the move goes through
// (docs/threat-model.md); this test asserts that gap so that closing it
// updates the docs.
func TestEscapeMoveAigateDir(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		r := b.sh("mv ~/.aigate ~/.aigate-old && mkdir ~/.aigate && echo 'net: allow' > ~/.aigate/config.yaml && echo moved")
		moved := strings.Contains(r.stdout, "moved")
		switch b.backend {
		case "lsm":
			if moved {
				t.Fatalf("~/.aigate was replaced:\n%s", r)
			}
			if _, ok := r.denied(events.OpWrite, filepath.Join(b.home, ".aigate")); !ok {
				t.Errorf("no write event for ~/.aigate:\n%s", r)
			}
		case "fanotify":
			if !moved {
				t.Fatalf("fanotify refused the move: update docs/threat-model.md:\n%s", r)
			}
		}
	})
}
