//go:build linux

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// floodEnv makes the test binary a flood of denied UDP connects
// ("ADDR THREADS MS"): it prints how many it made.
const floodEnv = "AIGATE_AGENT_TEST_FLOOD"

func init() {
	v := os.Getenv(floodEnv)
	if v == "" {
		return
	}
	n, err := floodConnects(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
	fmt.Println(n)
	os.Exit(0)
}

func floodConnects(spec string) (uint64, error) {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return 0, fmt.Errorf("%s=%q: want ADDR THREADS MS", floodEnv, spec)
	}
	dst, err := netip.ParseAddrPort(f[0])
	if err != nil {
		return 0, err
	}
	threads, err1 := strconv.Atoi(f[1])
	ms, err2 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
	var total atomic.Uint64
	errs := make(chan error, threads)
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each thread its own: Connect writes into it.
			sa := &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				errs <- err
				return
			}
			defer unix.Close(fd)
			var done uint64
			defer func() { total.Add(done) }()
			for time.Now().Before(deadline) {
				for range 64 {
					if err := unix.Connect(fd, sa); err != unix.EPERM {
						errs <- fmt.Errorf("connect %s: %v, want EPERM", dst, err)
						return
					}
					done++
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return total.Load(), <-errs
}

// BenchmarkAgentKernelEventRate is the whole path of a denial event in a
// real agent: a sandbox of the agent (fanotify backend and its sock_addr
// programs, default policy: net deny) runs a flood of denied UDP connects
// (AIGATE_BENCH_FLOOD_THREADS threads, default 2, for AIGATE_BENCH_FLOOD_MS,
// default 2000); the agent's pump takes each event from the ring buffer
// through the backend (loader reader, egress, composite) and fans it out
// to the sandbox's session. Reported: the connects denied per second, the
// events the pump took per second, the kernel's drops; checked on every
// run, exactly: the helper's count, the kernel's counter, the agent's
// Prometheus counters (aigate_violations_total, aigate_events_dropped_total)
// and pumped + dropped.
//
// Opt-in (AIGATE_BENCH_AGENT_KERNEL=1): the agent is this test process, on
// the host, and its fanotify marks (the sandbox's home, protected files,
// deny_exec binaries) make every process's opens of those files wait for
// its answer while the flood competes with it for the CPUs. Once in 22 runs
// it answered nothing for 20 s and its guard killed it, as designed.
func BenchmarkAgentKernelEventRate(b *testing.B) {
	if os.Getenv("AIGATE_BENCH_AGENT_KERNEL") != "1" {
		// skip-ok: opt-in, see above; a run by `-bench .` must not hold other processes' opens.
		b.Skip("set AIGATE_BENCH_AGENT_KERNEL=1 to run the whole-agent event-rate benchmark")
	}
	testutil.RequireRoot(b)
	be, err := backend.Open(policy.BackendFanotify, backend.Options{Logger: testLog(b)})
	if err != nil {
		testutil.SkipUnlessKernel(b, fmt.Sprintf("fanotify backend: %v", err))
	}
	ta := startAgentWith(b, "", "", func(c *Config) { c.Backend = be })
	threads, ms := 2, 2000
	for name, p := range map[string]*int{"AIGATE_BENCH_FLOOD_THREADS": &threads, "AIGATE_BENCH_FLOOD_MS": &ms} {
		if v := os.Getenv(name); v != "" {
			if *p, err = strconv.Atoi(v); err != nil || *p <= 0 {
				b.Fatalf("%s=%q: want a positive integer", name, v)
			}
		}
	}
	var made, pumped, dropped, delivered, sessDropped uint64
	var recvSecs float64
	for range b.N {
		st0 := agentStats(b, ta)
		p0 := ta.pumped.Load()
		home := b.TempDir()
		s, err := ta.client.CreateSandbox(context.Background(), api.CreateRequest{Home: home, ProjectRoot: home, Command: []string{"flood"}})
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=10.9.9.9:9 %d %d", floodEnv, threads, ms))
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		start := time.Now()
		child, err := launch.Start(s, cmd)
		if err != nil {
			b.Fatal(err)
		}
		// The session's client, as `aigate run` reads it: every denial it
		// receives (a folded event is its count), until the session ends.
		var recv uint64
		var lastRecv time.Time
		recvDone := make(chan struct{})
		go func() {
			defer close(recvDone)
			for e := range s.Events() {
				recv += e.N()
				lastRecv = time.Now()
			}
		}()
		if code, err := child.Wait(); code != 0 || err != nil {
			b.Fatalf("flood exited %d, %v: %s", code, err, stderr.String())
		}
		n, err := strconv.ParseUint(strings.TrimSpace(out.String()), 10, 64)
		if err != nil {
			b.Fatalf("flood printed %q", out.String())
		}
		st1 := agentStats(b, ta) // flushes the ring and waits for the pump
		gen := counter(st1, events.OpConnect) - counter(st0, events.OpConnect)
		drop := st1.EventsDropped - st0.EventsDropped
		got := ta.pumped.Load() - p0 // events: a folded one is one
		if gen != n {
			b.Fatalf("not exact: flood denied %d, kernel counted %d", n, gen)
		}
		checkMetrics(b, ta, st1)
		// The sandbox ends with its last process: End may find the
		// session over already, which is no failure here.
		_, _ = s.End(5 * time.Second)
		<-recvDone
		if recv+s.Dropped()+drop != n {
			b.Fatalf("not exact: flood denied %d; the session's client received %d, lost %d on the way, the backend dropped %d: %d", n, recv, s.Dropped(), drop, recv+s.Dropped()+drop)
		}
		made, pumped, dropped = made+n, pumped+got, dropped+drop
		delivered, sessDropped = delivered+recv, sessDropped+s.Dropped()
		if recv > 0 {
			recvSecs += lastRecv.Sub(start).Seconds()
		}
	}
	secs := float64(ms) / 1000 * float64(b.N)
	b.ReportMetric(float64(made)/secs, "gen-ev/s")
	b.ReportMetric(float64(pumped)/secs, "pumped-events/s") // folded ones as one
	b.ReportMetric(float64(dropped)/float64(b.N), "dropped/run")
	// Delivered: the denials the session's client received, over the time
	// from the flood's start to the last one received.
	if recvSecs > 0 {
		b.ReportMetric(float64(delivered)/recvSecs, "delivered-ev/s")
	}
	b.ReportMetric(float64(sessDropped)/float64(b.N), "session-dropped/run")
	b.ReportMetric(0, "ns/op")
}

// agentStats is what the agent's metrics read: the backend's counters,
// once the pump has taken every event behind them.
func agentStats(b *testing.B, ta *testAgent) enforce.Stats {
	b.Helper()
	// stats waits at most statsFlushMax for the pump; a loaded machine
	// may need longer to drain a full ring.
	if f, ok := ta.Agent.be.(enforce.Flusher); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n, err := f.Flush(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := enforce.AwaitCount(ctx, ta.pumped.Load, n); err != nil {
			b.Fatalf("the pump took %d of %d events: %v", ta.pumped.Load(), n, err)
		}
	}
	st, err := ta.stats()
	if err != nil {
		b.Fatal(err)
	}
	return st
}

func counter(st enforce.Stats, op events.Op) uint64 {
	var n uint64
	for _, c := range st.Violations {
		if c.Op == op && !c.Audit {
			n += c.Value
		}
	}
	return n
}

// checkMetrics compares the agent's Prometheus counters with st, read
// before them (no denial happens in between).
func checkMetrics(b *testing.B, ta *testAgent, st enforce.Stats) {
	b.Helper()
	mfs, err := ta.Registry().Gather()
	if err != nil {
		b.Fatal(err)
	}
	var connect, drops float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case mf.GetName() == "aigate_violations_total" && labels["operation"] == "connect" && labels["mode"] == "enforce":
				connect += m.GetCounter().GetValue()
			case mf.GetName() == "aigate_events_dropped_total":
				drops += m.GetCounter().GetValue()
			}
		}
	}
	if uint64(connect) != counter(st, events.OpConnect) || uint64(drops) != st.EventsDropped {
		b.Fatalf("metrics: connect %v dropped %v, the backend's counters %d and %d", connect, drops, counter(st, events.OpConnect), st.EventsDropped)
	}
}
