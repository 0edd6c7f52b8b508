//go:build linux

package escape

import (
	"os"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeExecAlias: deny_exec ssh holds where the distribution installs
// an alias symlink to it (Debian's /usr/bin/slogin -> ssh), which once made
// the fanotify backend take ssh for a multi-call binary and leave it alone.
func TestEscapeExecAlias(t *testing.T) {
	if fi, err := os.Lstat("/usr/bin/slogin"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Skip("no /usr/bin/slogin alias on this system")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		r := b.sh("/usr/bin/ssh -V && echo ran-ssh; slogin -V && echo ran-slogin")
		if strings.Contains(r.stdout, "ran-") {
			t.Fatalf("ssh ran:\n%s", r)
		}
		if _, ok := r.denied(events.OpExec, "ssh"); !ok {
			t.Errorf("no exec event for ssh:\n%s", r)
		}
	})
}
