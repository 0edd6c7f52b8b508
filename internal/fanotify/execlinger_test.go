//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestExecFSMarksLinger: the filesystem exec marks and the exec
// directories' ignore marks outlive the last sandbox for MarkLinger, so
// that the next sandbox does not read its PATH directories again (a
// quarter of the agent's CPU per run, issue #15). While they linger a
// change in an ignored directory still takes its mark away: a copy of the
// denied binary root puts there meanwhile is refused in the next sandbox,
// with an event.
func TestExecFSMarksLinger(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MarkLinger = time.Minute })
	denied := deniedTool(e)
	p := policy.Policy{DenyExec: rules("mytool")}
	dev := devOf(t, e.bin)

	s1 := e.sandboxUID(p, 1000)
	waitIgnores(t, e, e.bin, true)
	if err := e.b.Remove(s1.ID); err != nil {
		t.Fatal(err)
	}
	if !e.b.fsexec.covers(dev) {
		t.Fatal("the filesystem exec marks went with the last sandbox: they should linger")
	}
	if !e.b.fsexec.ignores(e.bin) {
		t.Fatalf("%s lost its ignore mark with the last sandbox: it should linger", e.bin)
	}

	// Longer than the watcher's poll (200 ms): a watcher that stopped
	// with the last sandbox would be gone by now.
	time.Sleep(500 * time.Millisecond)
	data, err := os.ReadFile(denied)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(e.bin, "renamed")
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	waitIgnores(t, e, e.bin, false)

	s2 := e.sandboxUID(p, 1000)
	if got := e.run(s2, "exec", cp); got != "EPERM" {
		t.Fatalf("sandboxed exec of a copy put in a lingering ignored directory: %s, want EPERM", got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != cp || ruleText(s2, ev) != "mytool" {
		t.Errorf("event %+v, want exec of %s by rule mytool", ev, cp)
	}
}

// TestExecFSMarksLingerExpiry: the linger a sandbox's end starts does not
// take the marks from a sandbox started before it runs out (a copy
// elsewhere on the filesystem is still refused), and the marks go once
// the last sandbox's linger has run out.
func TestExecFSMarksLingerExpiry(t *testing.T) {
	const linger = 300 * time.Millisecond
	e := newEnv(t, func(o *Options) { o.MarkLinger = linger })
	e.copyBin(filepath.Join(e.bin, "mytool"))
	cp := e.copyBin(filepath.Join(filepath.Dir(e.home), "srv", "a", "renamed"))
	p := policy.Policy{DenyExec: rules("mytool")}
	dev := devOf(t, cp)

	s1 := e.sandboxUID(p, 1000)
	waitIgnores(t, e, e.bin, true) // the marks linger only with ignore marks to keep
	if err := e.b.Remove(s1.ID); err != nil {
		t.Fatal(err)
	}
	s2 := e.sandboxUID(p, 1000)
	time.Sleep(3 * linger) // s1's linger runs out while s2 lives
	if !e.b.fsexec.covers(dev) {
		t.Fatal("the filesystem exec marks went while a sandbox lives: an earlier linger took them")
	}
	if got := e.run(s2, "exec", cp); got != "EPERM" {
		t.Fatalf("sandboxed exec of the copy %s: %s, want EPERM", cp, got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != cp || ruleText(s2, ev) != "mytool" {
		t.Errorf("event %+v, want exec of %s by rule mytool", ev, cp)
	}
	if err := e.b.Remove(s2.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.b.fsexec.covers(dev) {
		if time.Now().After(deadline) {
			t.Fatalf("the filesystem exec marks still there long after the linger of %v", linger)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := e.run(nil, "exec", cp); got != "ok" {
		t.Errorf("exec of %s outside any sandbox: %s", cp, got)
	}
}

// devOf is the device number of path, as the filesystem exec marks key it.
func devOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Dev)
}

// TestExecFSMarksNoLingerWithoutIgnores: after a root sandbox (which takes
// every ignore mark away) the filesystem exec marks go with it: lingering
// without ignore marks would make every exec on the machine a round trip
// meanwhile, the next run's own client and exec helper included (as root
// that made a run 1.16x slower, docs/performance.md).
func TestExecFSMarksNoLingerWithoutIgnores(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MarkLinger = time.Minute })
	deniedTool(e)
	dev := devOf(t, e.bin)
	s := e.sandboxUID(policy.Policy{DenyExec: rules("mytool")}, 0)
	if !e.b.fsexec.covers(dev) {
		t.Fatal("the filesystem is not marked for execs while the sandbox lives: the test proves nothing")
	}
	if err := e.b.Remove(s.ID); err != nil {
		t.Fatal(err)
	}
	if e.b.fsexec.covers(dev) {
		t.Error("the filesystem exec marks lingered after a root sandbox, with no ignore mark to keep")
	}
}
