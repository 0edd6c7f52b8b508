//go:build linux

package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// lateBackend is a fakeBackend whose events can lag behind the denials, as
// records in a ring buffer that its reader has not woken for: Flush hands
// them on, after lag, and says how many events Events will have carried.
type lateBackend struct {
	*fakeBackend
	lag  time.Duration
	gap  time.Duration // between the events Flush hands on, as a pump behind a flood takes them
	mu   sync.Mutex
	held []events.Event
	sent uint64
}

// denyLate is a denial whose event has not left the backend yet.
func (l *lateBackend) denyLate(e events.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = append(l.held, e)
}

func (l *lateBackend) Flush(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	held := l.held
	l.held = nil
	l.sent += uint64(len(held))
	go func() {
		time.Sleep(l.lag)
		for _, e := range held {
			l.ch <- e
			time.Sleep(l.gap)
		}
	}()
	return l.sent, nil
}

// TestLastEventReachesSession: a sandbox's last denial reaches its session
// before the session ends, however long its backend takes to hand it on,
// when the backend can say how many events are still to come (Flush);
// settle does not guess with a fixed grace period.
func TestLastEventReachesSession(t *testing.T) {
	testutil.HostOnly(t)
	late := &lateBackend{lag: 100 * time.Millisecond} // longer than the old grace and quiet period
	ta := startAgentWith(t, "", "", func(c *Config) {
		late.fakeBackend = c.Backend.(*fakeBackend)
		c.Backend = late
	})
	s, child, sb := sleepingSandbox(t, ta)
	late.denyLate(events.Event{CgroupID: sb.CgroupID, TGID: 42, Comm: "cat",
		Kind: events.KindFile, Op: events.OpRead, Path: "/home/u/.env"})
	ended, err := s.End(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if ended.Events != 1 {
		t.Errorf("the session ended counting %d events, want 1 (the late one)", ended.Events)
	}
	select {
	case e, ok := <-s.Events():
		if !ok {
			t.Error("the session ended without its sandbox's last event")
		} else if e.Path != "/home/u/.env" || e.Sandbox != s.Sandbox.Name {
			t.Errorf("session got %+v, want the read of /home/u/.env in %s", e, s.Sandbox.Name)
		}
	default:
		t.Error("the session ended without its sandbox's last event")
	}
}

// TestBacklogReachesSession: when a sandbox ends with a backlog of its
// events still to come through the pump (a flood's), its session waits for
// them as long as the pump keeps taking them, not a fixed half second:
// every denial reaches the client, and the session's count says so. An
// event the pump took after the sandbox was gone would be attributed to
// no one and counted in no session's drops.
func TestBacklogReachesSession(t *testing.T) {
	testutil.HostOnly(t)
	const backlog = 1500
	late := &lateBackend{gap: time.Millisecond} // 1.5 s at least, three times settleMax
	ta := startAgentWith(t, "", "", func(c *Config) {
		late.fakeBackend = c.Backend.(*fakeBackend)
		c.Backend = late
	})
	s, child, sb := sleepingSandbox(t, ta)
	for i := range backlog {
		late.denyLate(events.Event{CgroupID: sb.CgroupID, TGID: 42, Comm: "find",
			Kind: events.KindFile, Op: events.OpRead, Path: fmt.Sprintf("/home/u/%d/.env", i)})
	}
	var got uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range s.Events() {
			got += e.N()
		}
	}()
	ended, err := s.End(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	child.Wait()
	<-done
	if got+s.Dropped() != backlog || ended.Events != backlog {
		t.Errorf("the session received %d and lost %d of %d denials; it ended counting %d", got, s.Dropped(), backlog, ended.Events)
	}
}
