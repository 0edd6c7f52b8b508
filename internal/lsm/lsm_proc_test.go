//go:build linux

package lsm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// procHelper is the helper's side of the process tests: the operations of
// testutil.ProcOps, and "traceme", which asks the test (outside) to trace
// the helper. EACCES counts as EPERM: /proc answers a refused ptrace check
// with it.
func procHelper(args []string) error {
	if args[0] == "traceme" { // ask our parent (the test, outside) to trace us
		_, _, errno := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		if errno != 0 {
			return errno
		}
		// Traced, any signal now stops this process and the test's Wait
		// sees a stop instead of an exit (Go's preemption signal, under
		// the emulated VM's slowness): exit at once.
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		return nil
	}
	err := testutil.ProcOps(args)
	if errors.Is(err, unix.EACCES) {
		return unix.EPERM
	}
	return err
}

// outsideProc starts a process outside every sandbox for the test's
// length.
func outsideProc(t *testing.T) string {
	t.Helper()
	c := exec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	return strconv.Itoa(c.Process.Pid)
}

// TestLSMProcessBoundary: a sandboxed task can neither trace, read the
// memory or environment of, take descriptors from, nor signal a process
// outside its sandbox; each refusal is a process event naming the
// target. Its own children it can. Outside the sandbox all of it works.
func TestLSMProcessBoundary(t *testing.T) {
	l := openLSM(t)
	sb := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeEnforce}, policy.ModeEnforce)
	pid := outsideProc(t)
	for _, c := range []struct {
		op string
		ev events.Op
	}{
		{"ptrace", events.OpPtrace}, {"environ", events.OpPtrace}, {"mem", events.OpPtrace},
		{"vmread", events.OpPtrace}, {"getfd", events.OpPtrace}, {"cont", events.OpSignal},
	} {
		code, self := run(t, sb, c.op, pid)
		if code != exitEPERM {
			t.Errorf("%s %s: exit %d, want EPERM", c.op, pid, code)
			continue
		}
		ev := nextEvent(t, l)
		if ev.Kind != events.KindProc || ev.Op != c.ev || ev.Path != "pid "+pid+" (sleep)" || int(ev.TGID) != self {
			t.Errorf("%s: event %+v, want process %s \"pid %s (sleep)\" from %d", c.op, ev, c.ev, pid, self)
		}
	}
	for _, op := range []string{"ptrace", "environ", "mem", "vmread", "getfd", "cont"} {
		expectAllowed(t, sb, "child", op)
		expectAllowed(t, nil, op, pid)
	}
	noEvent(t, l)

	// PTRACE_TRACEME would make the parent outside (this test) the tracer.
	code, self := run(t, sb, "traceme")
	if code != exitEPERM {
		t.Errorf("traceme: exit %d, want EPERM", code)
	} else if ev := nextEvent(t, l); ev.Op != events.OpPtrace || int(ev.TGID) != self ||
		ev.Path != fmt.Sprintf("pid %d (%s)", os.Getpid(), commOf(t, os.Getpid())) {
		t.Errorf("traceme: event %+v, want ptrace naming pid %d", ev, os.Getpid())
	}
	expectAllowed(t, nil, "traceme")
	noEvent(t, l)
}

// TestLSMProcessAudit: in audit mode the same attach is reported and
// allowed.
func TestLSMProcessAudit(t *testing.T) {
	l := openLSM(t)
	sb := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeAudit}, policy.ModeAudit)
	pid := outsideProc(t)
	expectAllowed(t, sb, "cont", pid)
	if ev := nextEvent(t, l); ev.Op != events.OpSignal || !ev.Audit {
		t.Errorf("event %+v, want an audited signal", ev)
	}
}

// commOf is the kernel's name of process pid (15 bytes at most).
func commOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
