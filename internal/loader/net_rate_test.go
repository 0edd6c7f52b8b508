//go:build linux

package loader

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// The denial-event rate: helper threads in a sandbox cgroup flood the
// sock_addr programs with denied UDP connects (or sendtos), each one a
// counter increment and a ring-buffer event, while the test reads the
// events through the loader's own reader (eventStream: ring buffer, decode,
// channel), the path every agent's events take.

// floodOp is the helper's "flood OP ADDR T MS R".
func floodOp(args []string) (string, error) {
	if len(args) != 5 {
		return "", fmt.Errorf("flood takes OP ADDR THREADS MS RATE")
	}
	op := args[0]
	if op != "udp" && op != "sendto" {
		return "", fmt.Errorf("flood op %q: want udp or sendto", op)
	}
	dst, err := netip.ParseAddrPort(args[1])
	if err != nil {
		return "", err
	}
	var n [3]int
	for i, a := range args[2:] {
		if n[i], err = strconv.Atoi(a); err != nil {
			return "", err
		}
	}
	threads, ms, rate := n[0], n[1], n[2]
	perThread := float64(rate) / float64(threads)
	start := time.Now()
	deadline := start.Add(time.Duration(ms) * time.Millisecond)
	var total atomic.Uint64
	errs := make(chan error, threads)
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			// Each thread its own: Connect and Sendto write into it.
			sa, fam := sockaddr(dst)
			fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				errs <- err
				return
			}
			defer unix.Close(fd)
			var done uint64
			defer func() { total.Add(done) }()
			for {
				// The clock is read once per 64 operations, a few percent of
				// their cost at most.
				for range 64 {
					if op == "sendto" {
						err = unix.Sendto(fd, nil, 0, sa)
					} else {
						err = unix.Connect(fd, sa)
					}
					if err != unix.EPERM {
						errs <- fmt.Errorf("%s %s: %v, want EPERM", op, dst, err)
						return
					}
					done++
				}
				now := time.Now()
				if now.After(deadline) {
					return
				}
				if rate > 0 {
					due := start.Add(time.Duration(float64(done) / perThread * float64(time.Second)))
					if d := due.Sub(now); d > 0 {
						time.Sleep(d)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return "", err
	}
	return strconv.FormatUint(total.Load(), 10), nil
}

// flood runs the helper's flood in g and returns how many operations it
// made. It may run outside the test's goroutine: it returns its error.
func (e *netEnv) flood(g *cgroup.Group, op, dst string, threads int, d time.Duration, rate int) (uint64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	fd, err := g.OpenFD()
	if err != nil {
		return 0, err
	}
	defer fd.Close()
	cmd := exec.Command("ip", "netns", "exec", e.ns.Name, self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=flood %s %s %d %d %d", netHelperEnv, op, dst, threads, d.Milliseconds(), rate))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("flood helper: %w: %s", err, stderr.String())
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("flood helper printed %q", out)
	}
	return v, nil
}

// eventCounter reads a Net's events and counts them per operation, as the
// agent's pump would take them.
type eventCounter struct {
	total       atomic.Uint64 // events, as Flush counts them
	denials     atomic.Uint64 // what they stand for (folded: Count each)
	mu          sync.Mutex
	byOp        map[events.Op]uint64
	first, last time.Time
	hold        chan struct{} // closed: start reading
	done        chan struct{}
}

func countEvents(ch <-chan events.Event, reading bool) *eventCounter {
	c := &eventCounter{byOp: map[events.Op]uint64{}, hold: make(chan struct{}), done: make(chan struct{})}
	if reading {
		close(c.hold)
	}
	go func() {
		defer close(c.done)
		<-c.hold
		for ev := range ch {
			now := time.Now()
			c.mu.Lock()
			if c.first.IsZero() {
				c.first = now
			}
			c.last = now
			c.byOp[ev.Op] += ev.N()
			c.mu.Unlock()
			c.denials.Add(ev.N())
			c.total.Add(1)
		}
	}()
	return c
}

// drain waits until the counter has every event the ring buffer held.
func (c *eventCounter) drain(t testing.TB, n *Net) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent, err := n.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := enforce.AwaitCount(ctx, c.total.Load, sent); err != nil {
		t.Fatalf("the reader handed out %d events, the counter got %d: %v", sent, c.total.Load(), err)
	}
}

// statsDelta is after-before per operation (enforce, not audit), and the drops.
func statsDelta(before, after enforce.Stats) (map[events.Op]uint64, uint64) {
	d := map[events.Op]uint64{}
	for _, op := range []events.Op{events.OpConnect, events.OpSend} {
		d[op] = counter(after, op, false) - counter(before, op, false)
	}
	return d, after.EventsDropped - before.EventsDropped
}

func readStats(t testing.TB, n *Net) enforce.Stats {
	t.Helper()
	st, err := n.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestEventCountersExactUnderOverload floods the ring buffer while nobody
// reads it, from two helpers at once (connect and sendto), then reads what
// it kept: every denial is counted under its operation, and the events
// delivered plus the drops the kernel counted are exactly the denials.
func TestEventCountersExactUnderOverload(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	c := compileNet(t, policy.NetDeny, policy.LoopbackNone, "10.1.2.3")
	g := env.sandbox(n, 1, c.Net, nil, false)
	before := readStats(t, n)
	cnt := countEvents(n.Events(), false)
	// Flood in rounds of 300 ms until the kernel counts a drop: a round
	// makes tens of thousands of events on the host, but under TCG in
	// the 6.1 guest one made 9,600, and the ring buffer and the reader's
	// queue kept them all (no drop: the test would prove nothing).
	var made [2]uint64
	for round := 0; round < 20; round++ {
		var errs [2]error
		var wg sync.WaitGroup
		for i, op := range []string{"udp", "sendto"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, err := env.flood(g, op, "10.9.9.9:9", 1, 300*time.Millisecond, 0)
				made[i] += m
				errs[i] = err
			}()
		}
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			t.Fatal(err)
		}
		if _, dropped := statsDelta(before, readStats(t, n)); dropped > 0 {
			break
		}
	}
	close(cnt.hold)
	cnt.drain(t, n)
	gen, dropped := statsDelta(before, readStats(t, n))
	cnt.mu.Lock()
	delivered := cnt.byOp
	cnt.mu.Unlock()
	t.Logf("made connect %d sendto %d; counted %v; delivered %v; dropped %d", made[0], made[1], gen, delivered, dropped)
	if gen[events.OpConnect] != made[0] || gen[events.OpSend] != made[1] {
		t.Errorf("counters: connect %d sendto %d, the helpers were denied connect %d sendto %d times",
			gen[events.OpConnect], gen[events.OpSend], made[0], made[1])
	}
	if dropped == 0 {
		t.Fatalf("no drop: the ring buffer did not overflow, the test proves nothing (made %v)", made)
	}
	for _, op := range []events.Op{events.OpConnect, events.OpSend} {
		if delivered[op] > gen[op] {
			t.Errorf("%s: %d events delivered for %d denials", op, delivered[op], gen[op])
		}
	}
	if got, want := delivered[events.OpConnect]+delivered[events.OpSend]+dropped, gen[events.OpConnect]+gen[events.OpSend]; got != want {
		t.Errorf("delivered %d + dropped %d = %d, want the %d denials counted", cnt.denials.Load(), dropped, got, want)
	}
	for op := range delivered {
		if op != events.OpConnect && op != events.OpSend {
			t.Errorf("delivered events of other operations: %v", delivered)
		}
	}
}

// BenchmarkEventRate measures denial events per second: generated (the
// kernel's counters over the flood's duration) and delivered (events out of
// the loader's reader between the first and the last), and checks on every
// run that delivered + dropped is exactly what the counters counted.
// "flood": AIGATE_BENCH_FLOOD_THREADS threads (default 2) as fast as they
// can; "paced": the same at AIGATE_BENCH_PACED_RATE events/s in all
// (default 50000), a rate the reader should keep up with: no drop.
// Each run lasts AIGATE_BENCH_FLOOD_MS (default 2000); run with -benchtime=1x.
func BenchmarkEventRate(b *testing.B) {
	env := newNetEnv(b)
	n := openNet(b, NetOptions{Backend: "bench"})
	c := compileNet(b, policy.NetDeny, policy.LoopbackNone, "10.1.2.3")
	g := env.sandbox(n, 1, c.Net, nil, false)
	threads := envInt(b, "AIGATE_BENCH_FLOOD_THREADS", 2)
	d := time.Duration(envInt(b, "AIGATE_BENCH_FLOOD_MS", 2000)) * time.Millisecond
	cnt := countEvents(n.Events(), true)
	for _, cs := range []struct {
		name string
		rate int
	}{{"flood", 0}, {"paced", envInt(b, "AIGATE_BENCH_PACED_RATE", 50000)}} {
		b.Run(cs.name, func(b *testing.B) {
			var gen, dropped, delivered uint64
			var span time.Duration
			for range b.N {
				before := readStats(b, n)
				from := cnt.denials.Load()
				cnt.mu.Lock()
				cnt.first = time.Time{}
				cnt.mu.Unlock()
				made, err := env.flood(g, "udp", "10.9.9.9:9", threads, d, cs.rate)
				if err != nil {
					b.Fatal(err)
				}
				cnt.drain(b, n)
				g1, d1 := statsDelta(before, readStats(b, n))
				del := cnt.denials.Load() - from
				if g1[events.OpConnect] != made || del+d1 != made {
					b.Fatalf("not exact: helper denied %d, counters %d, delivered %d + dropped %d = %d",
						made, g1[events.OpConnect], del, d1, del+d1)
				}
				cnt.mu.Lock()
				span += cnt.last.Sub(cnt.first)
				cnt.mu.Unlock()
				gen, dropped, delivered = gen+made, dropped+d1, delivered+del
			}
			b.ReportMetric(float64(gen)/(d.Seconds()*float64(b.N)), "gen-ev/s")
			b.ReportMetric(float64(delivered)/span.Seconds(), "delivered-ev/s")
			b.ReportMetric(float64(dropped)/float64(b.N), "dropped/run")
			b.ReportMetric(float64(delivered)/float64(gen), "delivered-fraction")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}
