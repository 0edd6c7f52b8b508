//go:build linux

package lsm

import (
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/creack/pty"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// newPty opens a pseudo-terminal for the test's length and returns the
// name of its slave; with leader, a `sleep` leads a session on it, inside
// sb (nil: outside every sandbox).
func newPty(t *testing.T, leader bool, sb *sandbox) string {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close(); slave.Close() })
	if !leader {
		return slave.Name()
	}
	c := exec.Command("sleep", "60")
	c.Stdin = slave
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if sb != nil {
		c.SysProcAttr.UseCgroupFD, c.SysProcAttr.CgroupFD = true, int(sb.fd.Fd())
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	return slave.Name()
}

// ownPty is the helper's "ownpty": a pty of its own (opened, unlocked,
// its slave opened by name as Go's pty packages and expect do), its name
// opened once more.
func ownPty() error {
	master, slave, err := pty.Open()
	if err != nil {
		return err
	}
	defer master.Close()
	defer slave.Close()
	f, err := os.OpenFile(slave.Name(), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// TestLSMOtherTerminal: a sandboxed task cannot open, by its name, a
// pseudo-terminal whose session is led from outside the sandbox (the
// user's other terminal windows, also those opened after the sandbox was
// made: no rule names them), nor one made outside that has no session
// yet (a new window between its pty's unlock and its shell's setsid), for
// reading or writing; each refusal is a read event naming it. A pty the
// sandbox made, one whose session the sandbox leads, and the task's own
// controlling terminal open; outside the sandbox everything does.
func TestLSMOtherTerminal(t *testing.T) {
	l := openLSM(t)
	sb := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeEnforce}, policy.ModeEnforce)
	other, fresh := newPty(t, true, nil), newPty(t, false, nil)
	for _, c := range []struct{ tty, mode string }{{other, "r"}, {other, "w"}, {fresh, "w"}} {
		code, self := run(t, sb, "open", c.tty, c.mode)
		if code != exitEPERM {
			t.Errorf("open %s (%s) from inside: exit %d, want EPERM", c.tty, c.mode, code)
			continue
		}
		ev := nextEvent(t, l)
		if ev.Kind != events.KindFile || ev.Op != events.OpRead || ev.Path != c.tty || int(ev.TGID) != self {
			t.Errorf("event %+v, want a read of %s from %d", ev, c.tty, self)
		}
	}
	for _, tty := range []string{other, fresh} {
		if code, _ := run(t, nil, "open", tty, "w"); code != 0 {
			t.Errorf("open %s outside the sandbox: exit %d", tty, code)
		}
	}
	if code, _ := run(t, sb, "ownpty"); code != 0 {
		t.Errorf("a pty of the sandbox's own, opened by its name from inside: exit %d, want 0", code)
	}
	inside := newPty(t, true, sb)
	if code, _ := run(t, sb, "open", inside, "w"); code != 0 {
		t.Errorf("open %s (a session the sandbox leads) from inside: exit %d, want 0", inside, code)
	}
	// Its own controlling terminal: a session led outside, which the
	// helper joins and then moves into the sandbox (run --raw-terminal).
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	c := exec.Command("sh", "-c", `sh -c 'echo $$ > "$1/cgroup.procs" && exec "$2" open "$3" w' sh "$0" "$1" "$2"; exit $?`,
		sb.g.Path, os.Args[0], slave.Name())
	c.Env = append(os.Environ(), helperEnv+"=1")
	c.Stdin, c.Stderr = slave, os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := c.Run(); err != nil {
		t.Errorf("open of its own controlling terminal %s from inside: %v", slave.Name(), err)
	}
	noEvent(t, l)
}
