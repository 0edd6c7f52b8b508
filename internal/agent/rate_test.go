//go:build linux

package agent

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// BenchmarkAgentEventRate measures the agent's side of denial events: a
// backend (the fake: no kernel) hands the pump AIGATE_BENCH_AGENT_EVENTS
// (default 500,000) network denials of one sandbox as fast as the pump takes
// them; the pump names each and fans it out to the sandbox's session, which
// streams it over the agent's socket to its client (api.Session, in this
// process). Reported: events/s through the pump, events/s the session's
// client received, and its drops (a session that falls behind loses events,
// counted, rather than slowing the pump). Exact on every run: received +
// dropped == sent. The kernel side is BenchmarkEventRate in internal/loader.
func BenchmarkAgentEventRate(b *testing.B) {
	testutil.HostOnly(b)
	ta := startAgent(b, "", "")
	ctx := context.Background()
	home := b.TempDir()
	s, err := ta.client.CreateSandbox(ctx, api.CreateRequest{Home: home, ProjectRoot: home, Command: []string{"sleep", "600"}})
	if err != nil {
		b.Fatal(err)
	}
	child, err := launch.Start(s, exec.Command("sleep", "600"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_, _ = s.End(5 * time.Second)
		_, _ = child.Wait()
	})
	sb, ok := ta.be.sandbox(s.Sandbox.ID)
	if !ok {
		b.Fatalf("backend does not know sandbox %s", s.Sandbox.Name)
	}
	n := uint64(500000)
	if v := os.Getenv("AIGATE_BENCH_AGENT_EVENTS"); v != "" {
		if n, err = strconv.ParseUint(v, 10, 64); err != nil || n == 0 {
			b.Fatalf("AIGATE_BENCH_AGENT_EVENTS=%q: want a positive integer", v)
		}
	}
	ev := events.Event{
		CgroupID: sb.CgroupID, PID: 4242, TGID: 4242, Comm: "python3",
		Kind: events.KindNet, Op: events.OpConnect, Addr: netip.MustParseAddrPort("10.9.9.9:443"),
	}
	// burst: identical denials, which the session folds while its client
	// is behind; distinct: each to another port, which nothing folds.
	for _, cs := range []struct {
		name     string
		distinct bool
	}{{"burst", false}, {"distinct", true}} {
		b.Run(cs.name, func(b *testing.B) {
			var pumpS, recvS float64
			var got, dropped uint64
			for range b.N {
				pumped, recv, drops, took := sendEvents(b, ta, s, ev, n, cs.distinct)
				pumpS += pumped.Seconds()
				recvS += took.Seconds()
				got += recv
				dropped += drops
			}
			b.ReportMetric(float64(n)*float64(b.N)/pumpS, "pumped-ev/s")
			b.ReportMetric(float64(got)/recvS, "session-ev/s")
			b.ReportMetric(float64(dropped)/float64(b.N), "session-dropped/run")
			b.ReportMetric(0, "ns/op")
		})
	}
	// The session's own pace: chunks it can queue whole (subBuffer/2),
	// each sent once the last has arrived.
	b.Run("session", func(b *testing.B) {
		const chunk = subBuffer / 2
		total := n / 10 / chunk * chunk
		var took time.Duration
		var dropped uint64
		for range b.N {
			for range total / chunk {
				_, _, drops, t := sendEvents(b, ta, s, ev, chunk, false)
				took += t
				dropped += drops
			}
		}
		b.ReportMetric(float64(total)*float64(b.N)/took.Seconds(), "session-ev/s")
		b.ReportMetric(float64(dropped)/float64(b.N), "session-dropped/run")
		b.ReportMetric(0, "ns/op")
	})
}

// sendEvents hands the pump n copies of ev (distinct: each to another
// port) and waits until the session has received or lost each: how long
// the pump took, how many the session received and lost, and when it
// received the last. received + lost must be n exactly.
func sendEvents(b *testing.B, ta *testAgent, s *api.Session, ev events.Event, n uint64, distinct bool) (pumped time.Duration, recv, dropped uint64, took time.Duration) {
	b.Helper()
	from, dropFrom := ta.pumped.Load(), s.Dropped()
	start := time.Now()
	var got atomic.Uint64
	var last time.Time // written by the receiver, read once it is done
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		wait := time.NewTimer(time.Hour)
		defer wait.Stop()
		for got.Load()+s.Dropped()-dropFrom < n {
			wait.Reset(100 * time.Millisecond) // a drop report may be the last thing that comes
			select {
			case e := <-s.Events():
				got.Add(e.N()) // a folded event is its denials
				last = time.Now()
			case <-wait.C:
			}
		}
	}()
	for i := range n {
		if distinct {
			ev.Addr = netip.AddrPortFrom(ev.Addr.Addr(), uint16(1+i%65535))
		}
		ta.be.ch <- ev
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ta.pumped.Load()-from < n && ctx.Err() == nil {
		time.Sleep(50 * time.Microsecond)
	}
	pumped = time.Since(start)
	select {
	case <-recvDone:
	case <-ctx.Done():
		b.Fatalf("the session got %d events and %d drops of %d", got.Load(), s.Dropped()-dropFrom, n)
	}
	dropped = s.Dropped() - dropFrom
	if got.Load()+dropped != n {
		b.Fatalf("not exact: received %d + dropped %d != sent %d", got.Load(), dropped, n)
	}
	return pumped, got.Load(), dropped, last.Sub(start)
}
