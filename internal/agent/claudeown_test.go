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
	a := &Agent{byCgroup: map[uint64]*box{7: {own: &claudestate.Own{Home: "/home/u"}}}}
	ev := func(tgid uint32, path string) events.Event {
		return events.Event{Kind: events.KindFile, Op: events.OpWrite, Backend: events.BackendLandlock, CgroupID: 7, TGID: tgid, Path: path}
	}
	now := time.Unix(1000, 0)
	own, planted, elsewhere, other := ev(10, "/home/u"), ev(11, "/home/u"), ev(10, "/home/u/.bashrc"), ev(10, "/home/u/.claude/session-env")
	a.own.add(10, "/home/u", now)
	held, out := a.holdOwn(nil, []events.Event{own, planted, elsewhere, other}, now)
	if len(out) != 1 || out[0] != elsewhere {
		t.Fatalf("handed on at once %+v, want only %+v", out, elsewhere)
	}
	if len(held) != 2 {
		t.Fatalf("held %+v, want the planted and other session-env ones", held)
	}
	// The report of the session-env one came later: it is dropped too.
	a.own.add(10, "/home/u/.claude/session-env", now.Add(100*time.Millisecond))
	held, out = a.holdOwn(held, nil, now.Add(100*time.Millisecond))
	if len(out) != 0 || len(held) != 1 || held[0].e != planted {
		t.Fatalf("after its report: out %+v held %+v, want the planted one held", out, held)
	}
	held, out = a.holdOwn(held, nil, now.Add(ownWait+time.Millisecond))
	if len(held) != 0 || len(out) != 1 || out[0] != planted {
		t.Fatalf("after ownWait: out %+v held %+v, want the planted one handed on", out, held)
	}
	// A report is used once, and not after ownKeep.
	a.own.add(12, "/home/u", now)
	if !a.own.take(12, "/home/u", now) || a.own.take(12, "/home/u", now) {
		t.Error("a report was not taken exactly once")
	}
	a.own.add(12, "/home/u", now)
	if a.own.take(12, "/home/u", now.Add(ownKeep+time.Second)) {
		t.Error("a report was taken after ownKeep")
	}
}
