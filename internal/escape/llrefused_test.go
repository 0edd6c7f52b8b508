//go:build linux

package escape

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/llaudit"
)

// TestEscapeLandlockRefusals: Landlock's refusals inside a sandbox have an
// event without the kernel's audit, on every kernel: ptrace attach,
// /proc/PID/environ, process_vm_readv and SIGSTOP of an outside process of
// the same user, and an append to ~/.bashrc in the read-only home each fail
// and are reported (backend landlock), from the failed call's sys_exit
// (bpf/include/refused.h) and the agent's judgement (internal/refused).
// Where Landlock does not scope signals (ABI < 6), the LSM backend's own
// hook refuses and reports the signal. The controls, refused by Unix
// permissions before Landlock looks (a root-owned file in the read-only
// home, a directory there closed to the user, kill -0 of root's init),
// fail and carry no Landlock event.
func TestEscapeLandlockRefusals(t *testing.T) {
	eachBackendKernel(t, func(t *testing.T, b0 *box) {
		if !homeProtected() {
			t.Fatal("no Landlock on this kernel") // every kernel the suite runs on has it
		}
		b := homeBox(t, b0)
		defer func() {
			if t.Failed() {
				t.Logf("agent log:\n%s", grepLines(b.agent.log.String(), "andlock"))
			}
		}()
		auditOff(t)
		b.write("~/.bashrc", "# the user's\n")
		rootFile := b.path("~/.rootfile")
		if err := os.WriteFile(rootFile, []byte("root's\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		rootDir := b.path("~/.rootdir")
		if err := os.Mkdir(rootDir, 0o700); err != nil {
			t.Fatal(err)
		}
		tool := attackTool(t)
		victim := b.outside("env", "ESCAPE_TOKEN=outside-secret", "sleep", "300")
		pid := strconv.Itoa(victim.Process.Pid)
		time.Sleep(100 * time.Millisecond) // env has exec'd sleep
		ops := []string{"ptrace " + pid, "environ " + pid, "vmread " + pid, "stop " + pid}
		r := b.sh(`echo evil >> ~/.bashrc && echo WROTE
echo evil >> ` + rootFile + ` && echo ROOTWROTE
mkdir ` + rootDir + `/x && echo ROOTMADE
kill -0 1 && echo KILLED
env ` + procOpsEnv + `="` + strings.Join(ops, ";") + `" ` + tool + `
echo done`)
		if !strings.Contains(r.stdout, "done") {
			t.Fatalf("the script did not run through:\n%s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != len(ops)+1 {
			t.Fatalf("want one line for each of %d attacks, then done:\n%s", len(ops), r)
		}
		for i, op := range ops {
			if got := lines[i]; got != "EPERM" && got != "EACCES" {
				if strings.HasPrefix(op, "stop ") && !signalsScoped(b) && got == "ok" {
					// Documented: fanotify before Landlock ABI 6 (run warns;
					// TestEscapeProcessesOutside).
					_ = syscall.Kill(victim.Process.Pid, syscall.SIGCONT)
					continue
				}
				t.Errorf("%s of the outside process: %s, want EPERM or EACCES:\n%s", op, got, r)
			}
		}
		if got := b.read("~/.bashrc"); got != "# the user's\n" {
			t.Errorf("~/.bashrc changed: %q", got)
		}
		target := "pid " + pid + " ("
		want := []struct {
			op     events.Op
			kind   events.Kind
			target string
		}{
			{events.OpWrite, events.KindFile, b.path("~/.bashrc")},
			{events.OpPtrace, events.KindProc, "/proc/" + pid + "/environ of " + target},
			{events.OpPtrace, events.KindProc, target},
		}
		switch {
		case landlock.ABI() >= 6:
			want = append(want, struct {
				op     events.Op
				kind   events.Kind
				target string
			}{events.OpSignal, events.KindProc, target})
		case b.backend == "lsm":
			// Landlock lets the signal be; the BPF hook refuses it.
			if _, ok := r.denied(events.OpSignal, target); !ok {
				t.Errorf("no signal event from the LSM backend:\n%s", r)
			}
		}
		for _, w := range want {
			e, ok := landlockEvent(r, w.op, w.target)
			switch {
			case !ok:
				t.Errorf("no Landlock %s event for %s:\n%s", w.op, w.target, r)
			case e.Kind != w.kind || e.Sandbox == "" || e.TGID == 0 || e.Comm == "":
				t.Errorf("%s event incomplete: %+v", w.op, e)
			}
		}
		// ptrace attach and process_vm_readv: one event each (the agent
		// may fold the two into one with Count 2).
		n := uint64(0)
		for _, e := range r.events {
			if e.Backend == llaudit.Backend && e.Op == events.OpPtrace && strings.HasPrefix(e.Path, target) {
				n += e.N()
			}
		}
		if n != 2 {
			t.Errorf("%d Landlock ptrace events for %s, want 2 (attach, process_vm_readv):\n%s", n, target, r)
		}
		for _, e := range r.events {
			if e.Backend != llaudit.Backend {
				continue
			}
			if strings.HasPrefix(e.Path, rootFile) || strings.HasPrefix(e.Path, rootDir) || strings.Contains(e.Path, "pid 1 (") {
				t.Errorf("a refusal by Unix permissions reported as Landlock's: %+v", e)
			}
		}
	})
}

// auditOff disables the kernel's audit for the test, where the agent reads
// Landlock's audit records (ABI 7): with audit on, those report the
// refusals and the failed calls are not (no refusal twice). The previous
// state comes back when the test ends.
func auditOff(t *testing.T) {
	t.Helper()
	if landlock.ABI() < 7 {
		return
	}
	was, err := llaudit.SetEnabled(false)
	if err != nil {
		t.Fatalf("disable audit: %v", err)
	}
	t.Cleanup(func() {
		if _, err := llaudit.SetEnabled(was); err != nil {
			t.Errorf("restore audit enabled=%t: %v", was, err)
		}
	})
}
