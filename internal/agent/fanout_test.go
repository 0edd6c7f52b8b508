//go:build linux

package agent

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/events"
)

// TestFanoutStalledReader: a subscriber that reads nothing keeps the
// oldest subBuffer events, in order, and every later one is counted as
// dropped, for it and in the total; once it has read them it receives
// again.
func TestFanoutStalledReader(t *testing.T) {
	f := newFanout()
	s := &sub{root: true}
	f.add(s)
	defer f.remove(s)
	const extra = 300
	for i := range subBuffer + extra {
		f.publish(events.Event{Path: fmt.Sprint(i)}, 0, true)
	}
	if d := s.dropped.Load(); d != extra {
		t.Errorf("subscriber dropped %d, want %d", d, extra)
	}
	if d := f.dropped.Load(); d != extra {
		t.Errorf("fanout dropped %d, want %d", d, extra)
	}
	for i := range subBuffer {
		e, ok := s.pop()
		if !ok {
			t.Fatalf("queue empty after %d events, want %d", i, subBuffer)
		}
		if e.Path != fmt.Sprint(i) {
			t.Fatalf("event %d is %q: out of order", i, e.Path)
		}
	}
	if e, ok := s.pop(); ok {
		t.Fatalf("event %q beyond the %d kept", e.Path, subBuffer)
	}
	f.publish(events.Event{Path: "after"}, 0, true)
	if e, ok := s.pop(); !ok || e.Path != "after" {
		t.Fatalf("after catching up: got %q, %v", e.Path, ok)
	}
	if d := f.dropped.Load(); d != extra {
		t.Errorf("fanout dropped %d after catching up, want still %d", d, extra)
	}
}

// TestFanoutReadyToken: the ready channel holds a token exactly while
// events are unread, whatever the interleaving of pushes and pops, so a
// reader selecting on it neither misses an event nor spins.
func TestFanoutReadyToken(t *testing.T) {
	f := newFanout()
	s := &sub{root: true}
	f.add(s)
	defer f.remove(s)
	next, want := 0, 0
	for round := range 50 {
		for range round % 7 {
			f.publish(events.Event{Path: fmt.Sprint(next)}, 0, true)
			next++
		}
		for range round % 5 {
			select {
			case <-s.ready:
			default:
				if want < next {
					t.Fatalf("round %d: no token with %d events unread", round, next-want)
				}
				continue
			}
			e, ok := s.pop()
			if !ok {
				t.Fatalf("round %d: a token but no event", round)
			}
			if e.Path != fmt.Sprint(want) {
				t.Fatalf("round %d: got %q, want %d", round, e.Path, want)
			}
			want++
		}
	}
}

// TestFanoutIdleSubscriberCost: a subscriber that has nothing to read
// holds no queue, and one that caught up after a burst gives the burst's
// queue back. The agent holds a subscriber per session, a session per
// sandbox: when each allocated its whole queue up front (subBuffer events
// of ~232 bytes), a thousand idle sandboxes held 232 MiB.
func TestFanoutIdleSubscriberCost(t *testing.T) {
	f := newFanout()
	const n = 200
	subs := make([]*sub, n)
	for i := range subs {
		subs[i] = &sub{root: true}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, s := range subs {
		f.add(s)
	}
	runtime.ReadMemStats(&after)
	// Generous: an idle subscriber costs its ready channel and a map
	// entry, ~100 bytes; one queue allocated whole is 2,000 times that.
	const budget = 1024
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > budget {
		t.Errorf("adding a subscriber allocated %d bytes, budget %d", per, budget)
	}
	for i := range subBuffer {
		f.publish(events.Event{Path: fmt.Sprint(i)}, 0, true)
	}
	s := subs[0]
	for {
		if _, ok := s.pop(); !ok {
			break
		}
	}
	if len(s.ring) > subKeep {
		t.Errorf("a caught-up subscriber keeps a queue of %d events, at most %d wanted", len(s.ring), subKeep)
	}
}

// TestStreamReportsDrops: a reader that fell behind receives the events
// its queue kept, then how many were dropped, though no event follows to
// wake the stream up (no timer runs while nothing is dropped), and later
// events again.
func TestStreamReportsDrops(t *testing.T) {
	f := newFanout()
	s := &sub{root: true}
	f.add(s)
	defer f.remove(s)
	const extra = 50
	for i := range subBuffer + extra {
		f.publish(events.Event{Path: fmt.Sprint(i)}, 0, true)
	}
	srv, cli := net.Pipe()
	gone, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		(&Agent{}).stream(api.NewConn(srv), s, gone, nil)
	}()
	defer func() {
		close(gone)
		cli.Close()
		srv.Close()
		<-done
	}()
	c := api.NewConn(cli)
	deadline := time.Now().Add(10 * time.Second)
	var got int
	var dropped uint64
	for got < subBuffer || dropped < extra {
		var r api.Response
		if err := c.Read(&r, deadline); err != nil {
			t.Fatalf("after %d events and %d dropped reported: %v", got, dropped, err)
		}
		switch {
		case r.Event != nil:
			if r.Event.Path != fmt.Sprint(got) {
				t.Fatalf("event %d is %q", got, r.Event.Path)
			}
			got++
		case r.Dropped > 0:
			dropped += r.Dropped
		}
	}
	if got != subBuffer || dropped != extra {
		t.Fatalf("%d events and %d dropped, want %d and %d", got, dropped, subBuffer, extra)
	}
	f.publish(events.Event{Path: "later"}, 0, true)
	var r api.Response
	if err := c.Read(&r, deadline); err != nil || r.Event == nil || r.Event.Path != "later" {
		t.Fatalf("after the report: %+v, %v", r, err)
	}
}
