//go:build linux

package agent

import (
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/events"
)

// TestHoldOwn: where audit reports Landlock's refusals, an audit event in
// a directory of Claude Code's own refusals is dropped when the refused
// call's report showed it was one, handed on otherwise once ownWait
// passed; one elsewhere is handed on at once.
func TestHoldOwn(t *testing.T) {
	const proj = "/home/u/.claude/projects/-home-u-p"
	a := &Agent{byCgroup: map[uint64]*box{7: {own: &claudestate.Own{Home: "/home/u", Projects: []string{proj}}}}}
	ev := func(tgid uint32, path string) events.Event {
		return events.Event{Kind: events.KindFile, Op: events.OpWrite, Backend: events.BackendLandlock, CgroupID: 7, TGID: tgid, Path: path}
	}
	now := time.Unix(1000, 0)
	own, planted, elsewhere, other := ev(10, "/home/u"), ev(11, "/home/u"), ev(10, "/home/u/.bashrc"), ev(10, "/home/u/.claude/session-env")
	a.own.add(10, "/home/u", 1, now)
	held, out := a.holdOwn(nil, []events.Event{own, planted, elsewhere, other}, now)
	if len(out) != 1 || out[0] != elsewhere {
		t.Fatalf("handed on at once %+v, want only %+v", out, elsewhere)
	}
	if len(held) != 2 {
		t.Fatalf("held %+v, want the planted and other session-env ones", held)
	}
	// The report of the session-env one came later: it is dropped too.
	a.own.add(10, "/home/u/.claude/session-env", 1, now.Add(100*time.Millisecond))
	held, out = a.holdOwn(held, nil, now.Add(100*time.Millisecond))
	if len(out) != 0 || len(held) != 1 || held[0].e != planted {
		t.Fatalf("after its report: out %+v held %+v, want the planted one held", out, held)
	}
	held, out = a.holdOwn(held, nil, now.Add(ownWait+time.Millisecond))
	if len(held) != 0 || len(out) != 1 || out[0] != planted {
		t.Fatalf("after ownWait: out %+v held %+v, want the planted one handed on", out, held)
	}
	// In the run's own project directory (a rename of its own files has
	// no call's report): dropped at once; another project's is handed on.
	held, out = a.holdOwn(nil, []events.Event{ev(10, proj+"/s/subagents"), ev(10, proj), ev(10, proj+"x/s")}, now)
	if len(held) != 0 || len(out) != 1 || out[0].Path != proj+"x/s" {
		t.Fatalf("own project: out %+v held %+v, want only %sx/s handed on", out, held, proj)
	}
	// A report is used once, and not after ownKeep.
	a.own.add(12, "/home/u", 1, now)
	if !a.own.take(12, "/home/u", now) || a.own.take(12, "/home/u", now) {
		t.Error("a report was not taken exactly once")
	}
	a.own.add(12, "/home/u", 1, now)
	if a.own.take(12, "/home/u", now.Add(ownKeep+time.Second)) {
		t.Error("a report was taken after ownKeep")
	}
}
