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

// TestLSMOtherTerminal: a sandboxed task cannot open, by its name, a
// pseudo-terminal whose session is led from outside the sandbox (the
// user's other terminal windows, also those opened after the sandbox was
// made: no rule names them), for reading or writing; each refusal is a
// read event naming it. A pty with no session, one whose session the
// sandbox leads, and the task's own controlling terminal open; outside
// the sandbox everything does.
func TestLSMOtherTerminal(t *testing.T) {
	l := openLSM(t)
	sb := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeEnforce}, policy.ModeEnforce)
	other := newPty(t, true, nil)
	for _, mode := range []string{"r", "w"} {
		code, self := run(t, sb, "open", other, mode)
		if code != exitEPERM {
			t.Errorf("open %s (%s) from inside: exit %d, want EPERM", other, mode, code)
			continue
		}
		ev := nextEvent(t, l)
		if ev.Kind != events.KindFile || ev.Op != events.OpRead || ev.Path != other || int(ev.TGID) != self {
			t.Errorf("event %+v, want a read of %s from %d", ev, other, self)
		}
	}
	if code, _ := run(t, nil, "open", other, "w"); code != 0 {
		t.Errorf("open %s outside the sandbox: exit %d", other, code)
	}
	for name, tty := range map[string]string{
		"no session":               newPty(t, false, nil),
		"a session of the sandbox": newPty(t, true, sb),
	} {
		if code, _ := run(t, sb, "open", tty, "w"); code != 0 {
			t.Errorf("open %s (%s) from inside: exit %d, want 0", tty, name, code)
		}
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
