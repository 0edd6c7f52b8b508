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
// with an event. The next sandbox also keeps the marks when the first
// one's linger runs out during its life.
func TestExecFSMarksLinger(t *testing.T) {
	const linger = 300 * time.Millisecond
	e := newEnv(t, func(o *Options) { o.MarkLinger = linger })
	denied := deniedTool(e)
	p := policy.Policy{DenyExec: rules("mytool")}
	var st unix.Stat_t
	if err := unix.Stat(e.bin, &st); err != nil {
		t.Fatal(err)
	}

	s1 := e.sandboxUID(p, 1000)
	waitIgnores(t, e, e.bin, true)
	if err := e.b.Remove(s1.ID); err != nil {
		t.Fatal(err)
	}
	// Asked at once after Remove, well within the linger: without it
	// both went with the sandbox.
	if !e.b.fsexec.covers(uint64(st.Dev)) {
		t.Fatal("the filesystem exec marks went with the last sandbox: they should linger")
	}
	if !e.b.fsexec.ignores(e.bin) {
		t.Fatalf("%s lost its ignore mark with the last sandbox: it should linger", e.bin)
	}

	// A copy put in the ignored directory while nothing runs.
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
	// s1's linger runs out while s2 lives: s2's marks must stay.
	time.Sleep(3 * linger)
	if !e.b.fsexec.covers(uint64(st.Dev)) {
		t.Fatal("the filesystem exec marks went while a sandbox lives: a stale linger took them")
	}
	if got := e.run(s2, "exec", cp); got != "EPERM" {
		t.Fatalf("sandboxed exec of a copy put in a lingering ignored directory: %s, want EPERM", got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != cp || ruleText(s2, ev) != "mytool" {
		t.Errorf("event %+v, want exec of %s by rule mytool", ev, cp)
	}
	if err := e.b.Remove(s2.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.b.fsexec.covers(uint64(st.Dev)) {
		if time.Now().After(deadline) {
			t.Fatalf("the filesystem exec marks still there long after the linger of %v", linger)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e.b.fsexec.ignores(e.bin) {
		t.Errorf("%s kept its ignore mark after the linger", e.bin)
	}
}
