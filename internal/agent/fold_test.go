//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestFanoutFoldsIdenticalDenials: for a reader that takes counts, a flood
// of identical denials from two threads (interleaved, as the kernel
// delivers them) queues one event per thread whose counts add up to the
// flood, however far the reader is behind: nothing is dropped. A reader of
// protocol version 1 gets each denial as its own event and loses what
// does not fit; of an event the ring-buffer reader folded already, it gets
// one denial without a count (it would refuse the field) and the others
// as dropped. Either way the queued and dropped counts add up exactly.
func TestFanoutFoldsIdenticalDenials(t *testing.T) {
	const flood = 10 * subBuffer
	base := events.Event{Comm: "flood", Kind: events.KindNet, Op: events.OpConnect, Addr: netip.MustParseAddrPort("10.9.9.9:9")}
	for _, fold := range []bool{true, false} {
		t.Run(fmt.Sprintf("fold=%v", fold), func(t *testing.T) {
			f := newFanout()
			s := &sub{root: true, fold: fold}
			f.add(s)
			defer f.remove(s)
			var denials uint64
			for i := range flood {
				e := base
				e.Time = time.Unix(0, int64(i))
				e.PID = uint32(100 + i%2)
				e.Count = uint64(i % 3) // some folded already by the reader: 0 and 1 are one denial
				denials += e.N()
				f.publish(e, 0, true)
			}
			f.publish(events.Event{Op: events.OpRead, Path: "/p/.env"}, 0, true) // another denial: queued after
			denials++
			var got, queued uint64
			var last events.Event
			for {
				e, ok := s.pop()
				if !ok {
					break
				}
				queued++
				got += e.N()
				last = e
				if !fold && e.Count != 0 {
					t.Fatalf("version 1 queued an event with a count: %+v", e)
				}
			}
			dropped := s.dropped.Load()
			if got+dropped != denials || f.dropped.Load() != dropped {
				t.Fatalf("delivered %d + dropped %d (fanout %d), want %d", got, dropped, f.dropped.Load(), denials)
			}
			switch {
			case fold && (queued != 3 || dropped != 0 || last.Path != "/p/.env"):
				t.Fatalf("folding: %d events queued, %d dropped, last %+v; want 3 (one per thread, then the read), none dropped", queued, dropped, last)
			case !fold && queued != subBuffer:
				t.Fatalf("version 1: %d queued for %d denials, want each its own (%d)", queued, got, subBuffer)
			}
		})
	}
}

// TestFanoutFoldsOnlyUnread: a denial is folded only into an event not yet
// read; once the reader took it, the next identical one is queued anew
// (a line on the screen is never revised).
func TestFanoutFoldsOnlyUnread(t *testing.T) {
	f := newFanout()
	s := &sub{root: true, fold: true}
	f.add(s)
	defer f.remove(s)
	e := events.Event{Op: events.OpRead, Path: "/p/.env", PID: 7}
	f.publish(e, 0, true)
	f.publish(e, 0, true)
	if got, ok := s.pop(); !ok || got.N() != 2 {
		t.Fatalf("first pop: %+v, %v; want one event for 2 denials", got, ok)
	}
	f.publish(e, 0, true)
	if got, ok := s.pop(); !ok || got.N() != 1 {
		t.Fatalf("after the read: %+v, %v; want one denial", got, ok)
	}
}

// TestWatchFoldsForVersion2Only: two watchers that read nothing while a
// flood of identical denials passes. The one that asked with protocol
// version 2 gets them folded (events with a count, nothing lost); the one
// that asked with version 1, as an older aigate does, gets each denial as
// its own message without the field it would refuse (its decoder
// disallows unknown fields), and a drop report for what did not fit.
// Either way received + dropped is the flood.
func TestWatchFoldsForVersion2Only(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	v2, err := ta.client.Watch(context.Background(), api.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	nc, err := net.Dial("unix", ta.client.Socket)
	if err != nil {
		t.Fatal(err)
	}
	v1 := api.NewConn(nc)
	defer v1.Close()
	deadline := time.Now().Add(10 * time.Second)
	if err := v1.Write(&api.Request{V: 1, Op: api.OpWatch}, time.Second); err != nil {
		t.Fatal(err)
	}
	var ok api.Response
	if err := v1.Read(&ok, deadline); err != nil || !ok.OK {
		t.Fatalf("version 1 watch: %+v, %v", ok, err)
	}
	// Both are subscribed once the agent answered them.
	const flood = 5 * subBuffer
	e := events.Event{PID: 7, TGID: 7, Comm: "flood", Kind: events.KindNet, Op: events.OpConnect, Addr: netip.MustParseAddrPort("10.9.9.9:9")}
	for range flood {
		ta.be.deny(e, false)
	}

	var got2, msgs2, drop2 uint64
	for got2+drop2 < flood {
		ev, d, err := v2.Next()
		if err != nil {
			t.Fatalf("version 2 after %d denials in %d events: %v", got2, msgs2, err)
		}
		if ev != nil {
			got2 += ev.N()
			msgs2++
		}
		drop2 += d
	}
	if drop2 != 0 || msgs2 >= flood/2 {
		t.Errorf("version 2: %d denials in %d events, %d dropped: want them folded, none lost", got2, msgs2, drop2)
	}

	var got1, drop1 uint64
	for got1+drop1 < flood {
		var r map[string]json.RawMessage
		if err := v1.Read(&r, deadline); err != nil {
			t.Fatalf("version 1 after %d events and %d dropped: %v", got1, drop1, err)
		}
		if ev, ok := r["event"]; ok {
			if strings.Contains(string(ev), `"count"`) {
				t.Fatalf("version 1 got a folded event: %s", ev)
			}
			got1++
		}
		if d, ok := r["dropped"]; ok {
			n, err := strconv.ParseUint(string(d), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			drop1 += n
		}
	}
	if got1+drop1 != flood {
		t.Errorf("version 1: %d events + %d dropped of %d", got1, drop1, flood)
	}
}

// TestWatchMovedToForVersion3Only: an event with MovedTo (a planted tree
// moved aside) reaches watchers of every version, with MovedTo only for
// those of version 3: a version 2 reader refuses a batch with a ninth
// string (and so every event after it), a version 1 reader's JSON
// decoder refuses the unknown field.
func TestWatchMovedToForVersion3Only(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	deadline := time.Now().Add(10 * time.Second)
	watch := func(v int) *api.Conn {
		nc, err := net.Dial("unix", ta.client.Socket)
		if err != nil {
			t.Fatal(err)
		}
		c := api.NewConn(nc)
		t.Cleanup(func() { c.Close() })
		if err := c.Write(&api.Request{V: v, Op: api.OpWatch}, time.Second); err != nil {
			t.Fatal(err)
		}
		var ok api.Response
		if err := c.Read(&ok, deadline); err != nil || !ok.OK {
			t.Fatalf("version %d watch: %+v, %v", v, ok, err)
		}
		return c
	}
	v1, v2, v3 := watch(1), watch(2), watch(3)
	planted := events.Event{PID: 7, TGID: 7, Comm: "git", Kind: events.KindFile, Op: events.OpPlanted,
		Path: "/home/u/p/.git", MovedTo: "/home/u/p/.aigate-quarantine/git-1"}
	after := events.Event{PID: 7, TGID: 7, Comm: "cat", Kind: events.KindFile, Op: events.OpRead, Path: "/home/u/.env"}
	ta.be.deny(planted, false)
	ta.be.deny(after, false)

	for v, c := range map[int]*api.Conn{2: v2, 3: v3} {
		var evs []events.Event
		for len(evs) < 2 {
			var r api.Response
			var err error
			if evs, err = c.ReadStream(&r, evs); err != nil {
				t.Fatalf("version %d after %d events: %v", v, len(evs), err)
			}
		}
		want := planted.MovedTo
		if v < 3 {
			want = ""
		}
		if evs[0].Op != events.OpPlanted || evs[0].MovedTo != want || evs[1].Path != after.Path {
			t.Errorf("version %d got %+v, want the planted event with MovedTo %q, then the open", v, evs, want)
		}
	}
	for n := 0; n < 2; n++ {
		var r map[string]json.RawMessage
		if err := v1.Read(&r, deadline); err != nil {
			t.Fatalf("version 1 after %d events: %v", n, err)
		}
		if strings.Contains(string(r["event"]), "moved_to") {
			t.Errorf("version 1 got a field it refuses: %s", r["event"])
		}
	}
}
