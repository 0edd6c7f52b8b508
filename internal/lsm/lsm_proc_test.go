//go:build linux

package lsm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// procHelper is the helper's side of the process tests, each on a target
// pid: "ptrace PID" attaches (and detaches), "environ PID" and "mem PID"
// open /proc/PID/..., "kill PID" sends SIGCONT, "vmread PID" reads a byte
// of its memory with process_vm_readv, "getfd PID" takes its descriptor 0
// with pidfd_getfd; "child OP" runs OP on a child of its own. EACCES
// counts as EPERM: /proc answers a refused ptrace check with it.
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
	if args[0] == "child" {
		c := exec.Command("sleep", "30")
		if err := c.Start(); err != nil {
			return err
		}
		defer func() { _ = c.Process.Kill(); _ = c.Wait() }()
		return procHelper([]string{args[1], strconv.Itoa(c.Process.Pid)})
	}
	pid, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	err = procOp(args[0], pid)
	if errors.Is(err, unix.EACCES) {
		return unix.EPERM
	}
	return err
}

func procOp(op string, pid int) error {
	switch op {
	case "ptrace":
		runtime.LockOSThread()
		if err := unix.PtraceAttach(pid); err != nil {
			return err
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WALL, nil)
		return unix.PtraceDetach(pid)
	case "environ", "mem":
		f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/" + op)
		if err != nil {
			return err
		}
		return f.Close()
	case "kill":
		return unix.Kill(pid, unix.SIGCONT)
	case "vmread":
		// Any address: the permission check comes before the access, so a
		// refused read is EPERM and an allowed one EFAULT at worst.
		var b [1]byte
		local := []unix.Iovec{{Base: &b[0], Len: 1}}
		remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&b[0])), Len: 1}}
		_, err := unix.ProcessVMReadv(pid, local, remote, 0)
		if errors.Is(err, unix.EFAULT) {
			return nil
		}
		return err
	case "getfd":
		pfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return err
		}
		defer unix.Close(pfd)
		fd, err := unix.PidfdGetfd(pfd, 0, 0)
		if err != nil {
			return err
		}
		return unix.Close(fd)
	}
	return errors.New("unknown op " + op)
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
		{"vmread", events.OpPtrace}, {"getfd", events.OpPtrace}, {"kill", events.OpSignal},
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
	for _, op := range []string{"ptrace", "environ", "mem", "vmread", "getfd", "kill"} {
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
	expectAllowed(t, sb, "kill", pid)
	if ev := nextEvent(t, l); ev.Op != events.OpSignal || !ev.Audit {
		t.Errorf("event %+v, want an audited signal", ev)
	}
}

// TestLSMProcessVerifier logs how many instructions the verifier walked
// for the process programs (docs/lsm.md quotes them for 6.1).
func TestLSMProcessVerifier(t *testing.T) {
	l := openLSM(t)
	for name, p := range map[string]*ebpf.Program{
		"ptrace_access_check": l.obj.Objects().AigatePtraceAccessCheck,
		"ptrace_traceme":      l.obj.Objects().AigatePtraceTraceme,
		"task_kill":           l.obj.Objects().AigateTaskKill,
	} {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		n, ok := info.VerifiedInstructions()
		t.Logf("%s: %d instructions verified (known: %v)", name, n, ok)
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
