//go:build linux

package escape

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/fanotify"
)

// TestEscapeOtherTerminal: another terminal of the user (a terminal
// window, a tmux pane: a pseudo-terminal the user owns, held by processes
// outside) is out of the sandbox's reach. Opened by its name from inside,
// it could be read (what is typed there, a sudo password among it, goes
// to whichever reader comes first) and written (fake output, an OSC 52
// clipboard write). The LSM backend refuses the open with a read event;
// fanotify sees it after the fact, kills the sandbox and reports an open
// event (the write in between is not undone: docs/threat-model.md). A
// pseudo-terminal the sandbox makes itself (os.openpty, then its name
// opened, as expect and Go's pty packages do) keeps working.
func TestEscapeOtherTerminal(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		master, slave, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer master.Close()
		defer slave.Close()
		b.chown(slave.Name())
		script := fmt.Sprintf(`python3 -c 'import os; m, s = os.openpty(); os.open(os.ttyname(s), os.O_RDWR | os.O_NOCTTY); print("own-pty-ok")'
if printf 'echo pwned\n' > %[1]s; then echo WROTE; else echo REFUSED; fi
sleep 30; echo survived`, slave.Name())
		r := b.sh(script)
		if !strings.Contains(r.stdout, "own-pty-ok") {
			t.Errorf("the sandbox could not use a pseudo-terminal of its own:\n%s", r)
		}
		if b.backend == "lsm" {
			if !strings.Contains(r.stdout, "REFUSED") {
				t.Errorf("the open of the user's other terminal was not refused:\n%s", r)
			}
			if _, ok := r.denied(events.OpRead, slave.Name()); !ok {
				t.Errorf("no read event for %s:\n%s", slave.Name(), r)
			}
			// Nothing reached the terminal.
			if err := unix.SetNonblock(int(master.Fd()), true); err != nil {
				t.Fatal(err)
			}
			master.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 64)
			if n, _ := master.Read(buf); n > 0 {
				t.Errorf("the other terminal got %q", buf[:n])
			}
			return
		}
		if err := fanotify.CanWatchTerminals(); err != nil {
			// A kernel without file handles for devpts (6.1): not
			// enforced, and run says so.
			t.Logf("fanotify cannot watch terminals here (%v): the run must say the rule is not enforced", err)
			if !strings.Contains(r.stderr, "(your other terminals) is not enforced by the fanotify backend on this kernel") {
				t.Errorf("the terminals are not kept out on this kernel, and run does not say so:\n%s", r)
			}
			return
		}
		if _, ok := r.denied(events.OpOpen, slave.Name()); !ok {
			t.Errorf("no open event for %s:\n%s", slave.Name(), r)
		}
		if strings.Contains(r.stdout, "survived") || r.code == 0 {
			t.Errorf("the sandbox outlived its open of the user's other terminal:\n%s", r)
		}
	})
}
