//go:build linux

package escape

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/llaudit"
)

// TestEscapeLandlockEvents: Landlock's refusals inside a sandbox (a write
// to ~/.bashrc in the read-only home, /proc/PID/environ and a signal of a
// process outside) are reported as events, from the kernel's audit
// records where the kernel has them (Landlock ABI 7, Linux 6.15) and
// audit is enabled (the test enables it and puts the previous state
// back), each once: the failed calls the agent also sees are then not
// reported again. On older kernels (the VM guests) the events come from
// the failed calls (TestEscapeLandlockRefusals).
func TestEscapeLandlockEvents(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		if !homeProtected() {
			t.Fatal("no Landlock on this kernel") // every kernel the suite runs on has it
		}
		// A home outside /tmp, which the sandbox may write.
		b := homeBox(t, b0)
		defer func() {
			if t.Failed() {
				t.Logf("agent log:\n%s", grepLines(b.agent.log.String(), "andlock"))
			}
		}()
		reported := landlock.ABI() >= 7
		if reported {
			auditOn(t)
		}
		b.write("~/.bashrc", "# the user's\n")
		victim := b.outside("env", "ESCAPE_TOKEN=outside-secret", "sleep", "300")
		pid := strconv.Itoa(victim.Process.Pid)
		time.Sleep(100 * time.Millisecond) // env has exec'd sleep
		r := b.sh(`echo evil >> ~/.bashrc && echo WROTE
cat /proc/` + pid + `/environ && echo READ
kill -STOP ` + pid + ` && echo STOPPED
echo done`)
		if !strings.Contains(r.stdout, "done") {
			t.Fatalf("the script did not run through:\n%s", r)
		}
		for _, bad := range []string{"WROTE", "READ", "outside-secret"} {
			if strings.Contains(r.stdout, bad) {
				t.Errorf("%s: the attempt went through:\n%s", bad, r)
			}
		}
		if got := b.read("~/.bashrc"); got != "# the user's\n" {
			t.Errorf("~/.bashrc changed: %q", got)
		}
		bashrc := b.path("~/.bashrc")
		target := "pid " + pid + " ("
		want := []struct {
			op     events.Op
			kind   events.Kind
			target string
		}{
			{events.OpWrite, events.KindFile, bashrc},
			{events.OpPtrace, events.KindProc, target},
		}
		if landlock.ABI() >= 6 { // Landlock refuses signals first, on either backend
			want = append(want, struct {
				op     events.Op
				kind   events.Kind
				target string
			}{events.OpSignal, events.KindProc, target})
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
		if e, ok := landlockEvent(r, events.OpWrite, bashrc); ok && e.Path != bashrc {
			t.Errorf("write event path %q, want %q", e.Path, bashrc)
		}
		// One refusal, one event: with audit on, its record reports it
		// and the failed call is not reported again.
		n := uint64(0)
		for _, e := range r.events {
			if e.Backend == llaudit.Backend && e.Op == events.OpWrite && e.Path == bashrc {
				n += e.N()
			}
		}
		if n != 1 {
			t.Errorf("%d Landlock events for the one write to %s, want 1:\n%s", n, bashrc, r)
		}
		if !reported {
			return
		}
		// A refusal by a domain made outside every sandbox is never
		// attributed: the user's own process outside, in a Landlock
		// domain of its own, refused the same kind of write again and
		// again while a sandbox runs, is no event of the sandbox.
		outsidePath := b.path("~/.profile")
		b.write("~/.profile", "# the user's\n")
		b.outside("sh", "-c", "for i in $(seq 30); do env "+llOutsideEnv+"="+outsidePath+" "+attackTool(t)+"; sleep 0.1; done")
		r = b.sh("sleep 1; echo evil >> ~/.bashrc; sleep 1; echo done")
		if _, ok := landlockEvent(r, events.OpWrite, bashrc); !ok {
			t.Errorf("no Landlock event for the write in the sandbox:\n%s", r)
		}
		if e, ok := landlockEvent(r, events.OpWrite, outsidePath); ok {
			t.Errorf("a refusal outside the sandbox was attributed to it: %+v", e)
		}
	})
}

// llOutsideEnv makes this test binary a process outside every sandbox
// that puts itself in a Landlock domain handling writes and tries to
// write the file the variable names (refused, and logged by the kernel).
const llOutsideEnv = "AIGATE_ESCAPE_LANDLOCK_OUTSIDE"

func init() {
	path, ok := os.LookupEnv(llOutsideEnv)
	if !ok {
		return
	}
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if _, err := landlock.Restrict(landlock.Ruleset{HandledFS: unix.LANDLOCK_ACCESS_FS_WRITE_FILE}); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		f.Close()
		fmt.Println("wrote: the domain did not refuse")
		os.Exit(1)
	}
	os.Exit(0)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// landlockEvent is r's first event of op on target that Landlock's audit
// records reported.
func landlockEvent(r result, op events.Op, target string) (events.Event, bool) {
	for _, e := range r.events {
		if e.Backend == llaudit.Backend && e.Op == op && strings.Contains(e.Path, target) {
			return e, true
		}
	}
	return events.Event{}, false
}

// auditOn enables the kernel's audit for the test and puts the previous
// state back when it ends, also when it fails. Processes started from
// now on get an audit context until the next boot, whatever the state
// (docs/backends.md).
func auditOn(t *testing.T) {
	t.Helper()
	was, err := llaudit.SetEnabled(true)
	if err != nil {
		t.Fatalf("enable audit: %v", err)
	}
	t.Cleanup(func() {
		if _, err := llaudit.SetEnabled(was); err != nil {
			t.Errorf("restore audit enabled=%t: %v", was, err)
		}
	})
}
