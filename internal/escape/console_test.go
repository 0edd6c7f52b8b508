//go:build linux

package escape

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/fanotify"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// consoleScript writes to the console at $1 from inside; b.afterKill(10)
// follows.
const consoleScript = `if printf 'echo pwned\n' > "$1"; then echo WROTE; else echo REFUSED; fi
`

// TestEscapeConsole: a virtual console the user is logged in on (login
// chowns /dev/ttyN to the user) is out of the sandbox's reach, whether
// the user logged in there before the start (run's deny_read rule names
// it) or after (no rule does). Opened by its name from inside, it could
// be read (what is typed there) and written. The LSM backend refuses the
// open with a read event; fanotify sees it after the fact, kills the
// sandbox and reports an open event (naming run's rule for a console of
// the start). The console that is the command's own controlling terminal
// (aigate run --raw-terminal on it) keeps working. The console is one no
// process uses; its owner and mode are put back when the test ends.
func TestEscapeConsole(t *testing.T) {
	eachBackendKernel(t, func(t *testing.T, b *box) {
		console := testutil.FreeConsole(t, 63)
		t.Run("logged-in-later", func(t *testing.T) {
			r := b.openedAfterStart(t, func() string {
				userConsole(t, console) // the user logs in there
				return console
			})
			if !consoleKeptOut(t, b, r, console) {
				return
			}
			if _, ok := r.denied(events.OpOpen, console); !ok {
				t.Errorf("no open event for %s:\n%s", console, r)
			}
		})
		t.Run("at-start", func(t *testing.T) {
			userConsole(t, console)
			r := b.run(nil, "sh", "-c", consoleScript+b.afterKill(10), "sh", console)
			if !consoleKeptOut(t, b, r, console) {
				return
			}
			// Named by the run's rule for it (the user's consoles of
			// the start).
			if ev, ok := r.denied(events.OpOpen, console); !ok || ev.RuleText != console {
				t.Errorf("no open event for %s naming the run's rule for it:\n%s", console, r)
			}
		})
		t.Run("own", func(t *testing.T) {
			userConsole(t, console)
			b.ownConsole(t, console)
		})
	})
}

// consoleKeptOut checks what the backend did to the sandbox's write to
// console (consoleScript): LSM refused the open with a read event; on
// fanotify the sandbox was killed, or, where the kernel gives no file
// handles for /dev, run said the consoles are not kept out. It reports
// whether the caller is to check fanotify's open event.
func consoleKeptOut(t *testing.T, b *box, r result, console string) bool {
	t.Helper()
	if b.backend == "lsm" {
		if !strings.Contains(r.stdout, "REFUSED") {
			t.Errorf("the open of the user's console was not refused:\n%s", r)
		}
		if _, ok := r.denied(events.OpRead, console); !ok {
			t.Errorf("no read event for %s:\n%s", console, r)
		}
		return false
	}
	if err := fanotify.CanWatchConsoles(); err != nil {
		t.Logf("fanotify cannot watch the consoles here (%v): the run must say they are not kept out", err)
		if !strings.Contains(r.stderr, "your virtual consoles") {
			t.Errorf("the user's consoles are not kept out on this kernel, and run does not say so:\n%s", r)
		}
		return false
	}
	if strings.Contains(r.stdout, "survived") || r.code == 0 {
		t.Errorf("the sandbox outlived its open of the user's console:\n%s", r)
	}
	return true
}

// ownConsole runs aigate run --raw-terminal as the user on console, its
// controlling terminal (a user logged in there), and checks that the
// command opens it by name and lives on, with no event for it.
func (b *box) ownConsole(t *testing.T, console string) {
	t.Helper()
	os.Remove(b.events)
	f, err := os.OpenFile(console, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ok, survived := filepath.Join(b.proj, "console-own-ok"), filepath.Join(b.proj, "console-own-survived")
	os.Remove(ok)
	os.Remove(survived)
	cmd := b.asUser(exec.Command(machine.bin, "run", "--events", b.events, "--raw-terminal", "--", "sh", "-c",
		`printf x > "$(tty)" && echo ok > console-own-ok; sleep 1; echo ok > console-own-survived`))
	cmd.SysProcAttr.Setpgid = false
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty = true, true
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
	code, err := e2e.ExitCode(e2e.RunBounded(cmd, runLimit))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{ok, survived} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the command's own console, opened by name from inside (exit %d): %s not written", code, filepath.Base(p))
		}
	}
	r := result{code: code, events: b.readEvents()}
	for _, op := range []events.Op{events.OpRead, events.OpOpen} {
		if _, denied := r.denied(op, console); denied {
			t.Errorf("an event (%s) for the command's own console:\n%v", op, r.events)
		}
	}
}

// userConsole gives console to the user as login does (owner, mode 0620)
// and puts its owner and mode back when the test ends, failed or not.
func userConsole(t *testing.T, console string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(console, &st); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Lchown(console, int(st.Uid), int(st.Gid)); err != nil {
			t.Errorf("put back the owner of %s: %v", console, err)
		}
		if err := unix.Fchmodat(unix.AT_FDCWD, console, st.Mode&0o7777, 0); err != nil {
			t.Errorf("put back the mode of %s: %v", console, err)
		}
	})
	if err := os.Lchown(console, int(machine.uid), int(machine.gid)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, console, 0o620, 0); err != nil {
		t.Fatal(err)
	}
}
