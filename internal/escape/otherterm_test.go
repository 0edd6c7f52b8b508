//go:build linux

package escape

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/fanotify"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestEscapeOtherTerminal: another terminal of the user (a terminal
// window, a tmux pane: a pseudo-terminal the user owns, held by processes
// outside) is out of the sandbox's reach. Opened by its name from inside,
// it could be read (what is typed there, a sudo password among it, goes
// to whichever reader comes first) and written (fake output, an OSC 52
// clipboard write). The LSM backend refuses the open with a read event;
// fanotify sees it after the fact, kills the sandbox and reports an open
// event naming the run's rule for it (the write in between is not undone:
// docs/threat-model.md). A pseudo-terminal the sandbox makes itself (os.openpty, then its name
// opened, as expect and Go's pty packages do) keeps working; it is held a
// second, so that a number taken again by another test's pty outside in
// the meantime (a false kill, threat model) does not end this test.
func TestEscapeOtherTerminal(t *testing.T) {
	eachBackendKernel(t, func(t *testing.T, b *box) {
		master, slave := userPty(t, b)
		script := fmt.Sprintf(`python3 -c 'import os, time; m, s = os.openpty(); os.open(os.ttyname(s), os.O_RDWR | os.O_NOCTTY); print("own-pty-ok", flush=True); time.sleep(1)'
if printf 'echo pwned\n' > %[1]s; then echo WROTE; else echo REFUSED; fi
%[2]s`, slave.Name(), b.afterKill(30))
		r := b.sh(script)
		if !strings.Contains(r.stdout, "own-pty-ok") {
			t.Errorf("the sandbox could not use a pseudo-terminal of its own:\n%s", r)
		}
		if !keptOutAfterTheFact(t, b, r, master, slave, "other", "(your other terminals) is not enforced by the fanotify backend on this kernel") {
			return
		}
		// Named by the run's rule for it (the terminals of the start),
		// which tells the user why the sandbox was killed.
		if ev, ok := r.denied(events.OpOpen, slave.Name()); !ok || ev.RuleText != slave.Name() {
			t.Errorf("no open event for %s naming the run's rule for it:\n%s", slave.Name(), r)
		}
		if strings.Contains(r.stdout, "survived") || r.code == 0 {
			t.Errorf("the sandbox outlived its open of the user's other terminal:\n%s", r)
		}
	})
}

// newTermScript waits inside the sandbox for the name of a terminal the
// test makes after the start, then writes to it; b.afterKill(10) follows.
const newTermScript = `echo up > started
i=0; while [ ! -s newterm ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
t=$(cat newterm)
if printf 'echo pwned\n' > "$t"; then echo WROTE; else echo REFUSED; fi
`

// TestEscapeNewTerminal: a terminal of the user's opened after the
// sandbox was made (a new window, tmux pane or ssh session: no rule of
// the run names it) is out of the sandbox's reach too. The LSM backend
// refuses the open with a read event; fanotify sees it after the fact,
// kills the sandbox and reports an open event. The sandbox's own keep
// working: ptys it makes (with no session, with a session it leads, as
// script's and tmux's are), run's pty opened by name from another session
// of the command, and the user's terminal with --raw-terminal, the
// command's own.
func TestEscapeNewTerminal(t *testing.T) {
	eachBackendKernel(t, func(t *testing.T, b *box) {
		// A new window after its shell took the pty, and in the moment
		// before (the pty unlocked, no session yet), which a sandbox that
		// opens the next pty number in a loop could catch.
		for _, withShell := range []bool{true, false} {
			name := "outside"
			if !withShell {
				name = "outside-no-session-yet"
			}
			t.Run(name, func(t *testing.T) { b.newTermOutside(t, withShell) })
		}
		t.Run("inside", func(t *testing.T) {
			r := b.sh(`python3 -c '
import os, subprocess, sys, time
m, s = os.openpty()
name = os.ttyname(s)
os.close(os.open(name, os.O_RDWR | os.O_NOCTTY))
print("no-session-ok")
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    os.open(name, os.O_RDWR)  # its controlling terminal: a session led inside
    os.write(w, b"x")
    time.sleep(10)
    os._exit(0)
os.read(r, 1)
subprocess.run(["setsid", "sh", "-c", "printf x > " + name + " && echo session-inside-ok"])
sys.stdout.flush()
'
sleep 1; echo survived`)
			for _, want := range []string{"no-session-ok", "session-inside-ok", "survived"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("a pseudo-terminal of the sandbox's own did not work (%s):\n%s", want, r)
				}
			}
			if _, ok := r.denied(events.OpRead, "/dev/pts/"); ok {
				t.Errorf("a read event for a pseudo-terminal of the sandbox's own:\n%s", r)
			}
			if _, ok := r.denied(events.OpOpen, "/dev/pts/"); ok {
				t.Errorf("an open event for a pseudo-terminal of the sandbox's own:\n%s", r)
			}
		})
		t.Run("own", func(t *testing.T) {
			// run's pty, opened by name by a process of another session
			// of the command's (its leader is the command, inside).
			got, code := b.onTerminalRun(t, true, nil, "sh", "-c",
				`t=$(tty); setsid sh -c "printf run-pty-ok > $t"; sleep 1; echo survived`)
			if code != 0 || !strings.Contains(got, "run-pty-ok") || !strings.Contains(got, "survived") {
				t.Errorf("run's pty opened by name from inside (exit %d):\n%q", code, got)
			}
			evs := b.readEvents()
			// --raw-terminal: the user's terminal is the command's own
			// controlling terminal, whose session aigate run leads, outside.
			raw, code := b.onTerminalFlags(t, []string{"--raw-terminal"}, true, nil, "sh", "-c",
				`printf raw-own-ok > $(tty); sleep 1; echo survived`)
			if code != 0 || !strings.Contains(raw, "raw-own-ok") || !strings.Contains(raw, "survived") {
				t.Errorf("the command's own terminal opened by name with --raw-terminal (exit %d):\n%q", code, raw)
			}
			r := result{events: append(evs, b.readEvents()...)}
			if _, ok := r.denied(events.OpRead, "/dev/pts/"); ok {
				t.Errorf("a read event for the command's own terminal:\n%v", r.events)
			}
			if _, ok := r.denied(events.OpOpen, "/dev/pts/"); ok {
				t.Errorf("an open event for the command's own terminal:\n%v", r.events)
			}
		})
	})
}

// newTermOutside runs newTermScript and, once the sandbox runs, opens the
// user's new terminal for it to write to (with its shell's session or
// before it has one), and checks that the write was kept out.
func (b *box) newTermOutside(t *testing.T, withShell bool) {
	var master, slave *os.File
	r := b.openedAfterStart(t, func() string {
		// The user opens a new window: a pty of theirs, a shell
		// leading a session on it (withShell), outside.
		master, slave = userPty(t, b)
		if withShell {
			shell := b.asUser(exec.Command("sleep", "60"))
			shell.Stdin = slave
			shell.SysProcAttr.Setpgid = false
			shell.SysProcAttr.Setsid, shell.SysProcAttr.Setctty = true, true
			if err := shell.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = shell.Process.Kill(); _ = shell.Wait() })
		}
		return slave.Name()
	})
	if !keptOutAfterTheFact(t, b, r, master, slave, "new", "your terminals opened after this start") {
		return
	}
	if _, ok := r.denied(events.OpOpen, slave.Name()); !ok {
		t.Errorf("no open event for %s:\n%s", slave.Name(), r)
	}
	if strings.Contains(r.stdout, "survived") || r.code == 0 {
		t.Errorf("the sandbox outlived its open of the user's new terminal:\n%s", r)
	}
}

// openedAfterStart runs newTermScript and, once the sandbox runs, makes
// the user's new terminal (newTerm returns its path) for it to write to.
func (b *box) openedAfterStart(t *testing.T, newTerm func() string) result {
	t.Helper()
	os.Remove(b.events)
	started, name := filepath.Join(b.proj, "started"), filepath.Join(b.proj, "newterm")
	os.Remove(started)
	os.Remove(name)
	cmd := b.asUser(exec.Command(machine.bin, "run", "--events", b.events, "--", "sh", "-c", newTermScript+b.afterKill(10)))
	var stdout, stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- e2e.WaitBounded(cmd, runLimit) }()
	for deadline := time.Now().Add(runLimit); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox did not start:\n%s", stderr.String())
		}
	}
	term := newTerm()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, []byte(term), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
	code, err := e2e.ExitCode(<-waited)
	if err != nil {
		t.Fatal(err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String(), events: b.readEvents()}
}

// keptOutAfterTheFact checks what the backend did to the sandbox's open of
// one of the user's terminals (which: "other", "new") where it can refuse
// it or cannot see it, and reports whether the caller is to check the
// fanotify backend's kill: LSM refused it (refusedOnLSM); a kernel without
// file handles for devpts (6.1) keeps it out on neither, and run must say
// so in a line with warning.
func keptOutAfterTheFact(t *testing.T, b *box, r result, master, slave *os.File, which, warning string) bool {
	t.Helper()
	if b.backend == "lsm" {
		refusedOnLSM(t, r, master, slave, which)
		return false
	}
	if err := fanotify.CanWatchTerminals(); err != nil {
		t.Logf("fanotify cannot watch terminals here (%v): the run must say they are not kept out", err)
		if !strings.Contains(r.stderr, warning) {
			t.Errorf("the user's %s terminals are not kept out on this kernel, and run does not say so:\n%s", which, r)
		}
		return false
	}
	return true
}

// refusedOnLSM checks what the LSM backend does to the sandbox's open of
// one of the user's terminals (which: "other", "new"): refused, with a
// read event, and nothing written reached the terminal.
func refusedOnLSM(t *testing.T, r result, master, slave *os.File, which string) {
	t.Helper()
	if !strings.Contains(r.stdout, "REFUSED") {
		t.Errorf("the open of the user's %s terminal was not refused:\n%s", which, r)
	}
	if _, ok := r.denied(events.OpRead, slave.Name()); !ok {
		t.Errorf("no read event for %s:\n%s", slave.Name(), r)
	}
	if err := unix.SetNonblock(int(master.Fd()), true); err != nil {
		t.Fatal(err)
	}
	master.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 64)
	if n, _ := master.Read(buf); n > 0 {
		t.Errorf("the %s terminal got %q", which, buf[:n])
	}
}

// userPty opens a pseudo-terminal of the user's outside the sandbox (as a
// terminal window's), closed when the test ends.
func userPty(t *testing.T, b *box) (master, slave *os.File) {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close(); slave.Close() })
	b.chown(slave.Name())
	return master, slave
}
