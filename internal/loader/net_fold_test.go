//go:build linux

package loader

import (
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestEventReaderFoldsWhileBehind: while nobody takes the events, the
// reader folds a flood of identical denials (two threads, interleaved)
// into a few events with counts instead of letting the ring buffer
// overflow; what it hands on stands for every denial (plus the kernel's
// drops, if any), exactly.
func TestEventReaderFoldsWhileBehind(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	c := compileNet(t, policy.NetDeny, policy.LoopbackNone, "10.1.2.3")
	g := env.sandbox(n, 1, c.Net, nil, false)
	before := readStats(t, n)
	cnt := countEvents(n.Events(), false)
	made, err := env.flood(g, "udp", "10.9.9.9:9", 2, 600*time.Millisecond, 0)
	if err != nil {
		t.Fatal(err)
	}
	close(cnt.hold)
	cnt.drain(t, n)
	gen, dropped := statsDelta(before, readStats(t, n))
	denials, evs := cnt.denials.Load(), cnt.total.Load()
	t.Logf("made %d; counted %d; %d events for %d denials; dropped %d", made, gen[events.OpConnect], evs, denials, dropped)
	if gen[events.OpConnect] != made || denials+dropped != made {
		t.Fatalf("not exact: made %d, counted %d, delivered %d + dropped %d", made, gen[events.OpConnect], denials, dropped)
	}
	// Unfolded, the reader hands on the channel's 256 events and one it
	// waits with, and the 1 MiB ring buffer keeps what fits (~3,400
	// events of 304 bytes): the rest is dropped. Folding, the reader goes
	// on reading while it waits and stands for far more than that, with
	// fewer events than denials (how many more depends on the CPU it gets
	// beside the flood: the kernel still drops what it cannot read; at a
	// load of 25 on 2 CPUs it stood for 3x, where a quiet machine gives
	// far more).
	unfolded := uint64(eventChannelSize + 1 + (1<<20)/304)
	if denials < 2*unfolded || evs > denials/4 {
		t.Errorf("%d events for %d denials (%d dropped): the reader did not fold while it waited (unfolded it would deliver at most %d)", evs, denials, dropped, unfolded)
	}
}
