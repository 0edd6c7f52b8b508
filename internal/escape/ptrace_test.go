//go:build linux

package escape

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// procOpsEnv makes this test binary, copied where the test user can run
// it, the attacker's tool: neither the host nor the VM guest is sure to
// have gdb or python, and the attack is a handful of system calls.
const procOpsEnv = "AIGATE_ESCAPE_PROC"

func init() { testutil.HelperOps(procOpsEnv, procOp) }

// procOp runs one attack on a process (testutil.ProcOps: "OP PID", or
// "child OP" on a child of its own) and prints "ok" or the errno's name.
func procOp(args []string) string {
	err := testutil.ProcOps(args)
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	if err != nil {
		return err.Error()
	}
	return "ok"
}

var (
	toolOnce sync.Once
	toolPath string
	toolErr  error
)

// attackTool is this binary, copied next to aigate where the user can run it.
func attackTool(t *testing.T) string {
	t.Helper()
	toolOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			toolErr = err
			return
		}
		toolPath = filepath.Join(machine.dir, "escape-proc")
		toolErr = copyFile(self, toolPath, 0o755)
	})
	if toolErr != nil {
		t.Fatal(toolErr)
	}
	return toolPath
}

// procState is the state letter of /proc/PID/stat (T: stopped).
func procState(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// ptraceEvents and signalEvents say whether this backend reports the
// refusals as process events: the LSM backend's hooks do, unless Landlock
// (earlier in the kernel's LSM order on the distributions that have both)
// refused first, which it does for ptrace from ABI 1 and for signals from
// ABI 6. Landlock's refusals have an event only through audit (Linux
// 6.15+, audit enabled), which TestEscapeLandlockEvents checks.
func ptraceEvents(b *box) bool { return b.backend == "lsm" && landlock.ABI() == 0 }

func signalEvents(b *box) bool { return b.backend == "lsm" && landlock.ABI() < 6 }

// signalsScoped says whether this backend refuses signals to the outside:
// the LSM backend's task_kill hook does; on fanotify only Landlock ABI 6.
func signalsScoped(b *box) bool { return b.backend == "lsm" || landlock.ABI() >= 6 }

// TestEscapeProcessesOutside: from inside the sandbox, the user's own
// processes outside it (here a sleep with a token in its environment,
// standing for the shell that started aigate run) can be neither traced,
// read (environ, mem, maps, process_vm_readv), robbed of a descriptor
// (pidfd_getfd) nor stopped. A child inside the sandbox can be traced and
// signalled: the control.
func TestEscapeProcessesOutside(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		tool := attackTool(t)
		victim := b.outside("env", "ESCAPE_TOKEN=outside-secret", "sleep", "300")
		pid := strconv.Itoa(victim.Process.Pid)
		time.Sleep(100 * time.Millisecond) // env has exec'd sleep
		attacks := []string{"ptrace", "environ", "mem", "maps", "vmread", "getfd", "stop"}
		controls := []string{"child ptrace", "child environ", "child mem", "child vmread", "child getfd", "child stop", "child cont"}
		var ops []string
		for _, a := range attacks {
			ops = append(ops, a+" "+pid)
		}
		ops = append(ops, controls...)
		r := b.run(nil, "env", procOpsEnv+"="+strings.Join(ops, ";"), tool)
		got := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(got) != len(ops) {
			t.Fatalf("the attack tool did not run through:\n%s", r)
		}
		for i, a := range attacks {
			if a == "stop" && !signalsScoped(b) {
				// Documented: fanotify on a kernel before 6.12. run says so.
				if got[i] != "ok" || !strings.Contains(r.stderr, "can still signal") {
					t.Errorf("Landlock ABI %d: stop %s, and run did not warn:\n%s", landlock.ABI(), got[i], r)
				}
				_ = syscall.Kill(victim.Process.Pid, syscall.SIGCONT)
				continue
			}
			if got[i] != "EPERM" && got[i] != "EACCES" {
				t.Errorf("%s of the outside process: %s, want EPERM or EACCES", a, got[i])
			}
		}
		for i, c := range controls {
			if g := got[len(attacks)+i]; g != "ok" {
				t.Errorf("control %s inside the sandbox: %s, want ok", c, g)
			}
		}
		if s := procState(t, victim.Process.Pid); signalsScoped(b) && (s == "T" || s == "t") {
			t.Errorf("the outside process was stopped (state %s)", s)
		}
		// Where Landlock refused first (fanotify, or the LSM backend
		// behind Landlock), there is no event: Landlock reports nothing.
		target := "pid " + pid + " ("
		if _, ok := r.denied(events.OpPtrace, target); ptraceEvents(b) && !ok {
			t.Errorf("no ptrace event for %s:\n%s", target, r)
		}
		if _, ok := r.denied(events.OpSignal, target); signalEvents(b) && !ok {
			t.Errorf("no signal event for %s:\n%s", target, r)
		}
	})
}

// TestEscapeGdbOutside is the attack of issue #10 as it was done: gdb
// attached to the user's shell outside and made it run a command. Runs
// where gdb is installed (the host); the system calls underneath are
// TestEscapeProcessesOutside's.
func TestEscapeGdbOutside(t *testing.T) {
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		testutil.SkipUnlessKernel(t, "no gdb here; TestEscapeProcessesOutside covers ptrace attach")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		victim := b.outside("sh", "-c", "while :; do sleep 1; done")
		mark := filepath.Join(b.home, "pwned")
		r := b.sh(gdb + " -batch -nx -p " + strconv.Itoa(victim.Process.Pid) +
			" -ex 'call (int)system(\"touch " + mark + "\")' 2>&1; echo gdb done")
		if _, err := os.Stat(mark); err == nil {
			t.Fatalf("gdb made a process outside the sandbox run a command:\n%s", r)
		}
		// The inferior call may fail on its own (some hypervisors refuse
		// gdb's xsave writes); the attach is what must not happen.
		if strings.Contains(r.stdout, "detached") || !strings.Contains(r.stdout, "ptrace: Operation not permitted") {
			t.Errorf("gdb attached to a process outside the sandbox:\n%s", r)
		}
		if !strings.Contains(r.stdout, "gdb done") {
			t.Errorf("gdb did not run:\n%s", r)
		}
		if ptraceEvents(b) {
			if _, ok := r.denied(events.OpPtrace, "pid "+strconv.Itoa(victim.Process.Pid)); !ok {
				t.Errorf("no ptrace event:\n%s", r)
			}
		}
		// The control: gdb on a child inside the sandbox works.
		r = b.sh("sleep 30 & " + gdb + " -batch -nx -p $! -ex 'info proc' 2>&1; kill $!")
		if !strings.Contains(r.stdout, "process ") || strings.Contains(r.stdout, "ptrace: Operation not permitted") {
			t.Errorf("gdb could not attach to a child inside the sandbox:\n%s", r)
		}
	})
}
