//go:build linux

package loader

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// nextEvents reads k events or fails after a timeout.
func nextEvents(t *testing.T, ch <-chan events.Event, k int) []events.Event {
	t.Helper()
	var got []events.Event
	timeout := time.After(5 * time.Second)
	for len(got) < k {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event channel closed after %d events", len(got))
			}
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("got %d events, want %d: %+v", len(got), k, got)
		}
	}
	return got
}

func noMoreEvents(t *testing.T, ch <-chan events.Event) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
}

func counter(st enforce.Stats, op events.Op, audit bool) uint64 {
	for _, c := range st.Violations {
		if c.Op == op && c.Audit == audit {
			return c.Value
		}
	}
	return 0
}

// TestNetEventsAndCounters checks every field of the events a denial
// produces, and that the counters count exactly the denials.
func TestNetEventsAndCounters(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	c := compileNet(t, policy.NetDeny, policy.LoopbackAll, "10.1.2.3:8443")
	g := env.sandbox(n, 7, c.Net, nil, false)
	start := time.Now()
	got, pid := env.run(g, "tcp 10.1.2.3:8444", "sendto [2001:db8::1]:53", "tcp [::ffff:169.254.169.254]:80", "tcp 10.1.2.3:8443", "tcp 127.0.0.1:0")
	want := []syscall.Errno{syscall.EPERM, syscall.EPERM, syscall.EPERM, 0, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("op %d: errno %d, want %d", i, got[i], want[i])
		}
	}
	metadata, _ := c.MatchConnect(netip.MustParseAddrPort("169.254.169.254:80"), nil, false)
	evs := nextEvents(t, n.Events(), 3)
	noMoreEvents(t, n.Events())
	exe, _ := os.Executable()
	comm := []rune(filepathBase(exe))
	if len(comm) > 15 {
		comm = comm[:15]
	}
	wantEv := []struct {
		op   events.Op
		addr string
		rule policy.RuleID
	}{
		{events.OpConnect, "10.1.2.3:8444", c.Net.DenyRule},
		{events.OpSend, "[2001:db8::1]:53", c.Net.DenyRule},
		{events.OpConnect, "[::ffff:169.254.169.254]:80", metadata},
	}
	for i, ev := range evs {
		w := wantEv[i]
		if ev.Kind != events.KindNet || ev.Op != w.op || ev.Addr != netip.MustParseAddrPort(w.addr) ||
			ev.Rule != uint32(w.rule) || ev.Audit || ev.CgroupID != g.ID || ev.TGID != uint32(pid) ||
			ev.PID != uint32(pid) || ev.UID != 0 || ev.Comm != string(comm) || ev.Backend != "test" {
			t.Errorf("event %d = %+v, want op %s addr %s rule %d cgroup %d pid %d comm %q", i, ev, w.op, w.addr, w.rule, g.ID, pid, string(comm))
		}
		if ev.Time.Before(start.Add(-time.Second)) || ev.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("event %d time %v is not around %v", i, ev.Time, start)
		}
	}
	if w := metadata; w == 0 || w == c.Net.DenyRule {
		t.Fatalf("metadata rule %d should be its own rule", w)
	}
	st, err := n.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if counter(st, events.OpConnect, false) != 2 || counter(st, events.OpSend, false) != 1 || len(st.Violations) != 2 || st.EventsDropped != 0 {
		t.Fatalf("stats = %+v, want 2 connects and 1 send", st)
	}
}

func filepathBase(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// TestNetAudit: an audited sandbox is allowed through and reported.
func TestNetAudit(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{})
	c := compileNet(t, policy.NetDeny, policy.LoopbackAll)
	g := env.sandbox(n, 3, c.Net, nil, true)
	got, _ := env.run(g, "tcp 10.1.2.3:80", "sendto [2001:db8::1]:53", "tcp 127.0.0.1:0")
	for i, e := range got {
		if e != 0 {
			t.Errorf("op %d: errno %d in audit mode", i, e)
		}
	}
	evs := nextEvents(t, n.Events(), 2)
	noMoreEvents(t, n.Events())
	for _, ev := range evs {
		if !ev.Audit || ev.Rule != uint32(c.Net.DenyRule) {
			t.Errorf("event %+v: want audit with rule %d", ev, c.Net.DenyRule)
		}
	}
	st, err := n.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if counter(st, events.OpConnect, true) != 1 || counter(st, events.OpSend, true) != 1 || counter(st, events.OpConnect, false) != 0 {
		t.Fatalf("stats = %+v, want one audited connect and send", st)
	}
}

// TestNetConfinement: processes outside the sandbox are untouched while a
// sandboxed one is refused the same destination at the same time; a cgroup
// created below the sandbox stays confined; two sandboxes keep their own
// policies.
func TestNetConfinement(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{})
	strict := compileNet(t, policy.NetDeny, policy.LoopbackNone, "10.1.2.3:8443")
	open := compileNet(t, policy.NetAllow, policy.LoopbackAll)
	gs := env.sandbox(n, 1, strict.Net, nil, false)
	go_ := env.sandbox(n, 2, open.Net, nil, false)

	// The test process itself, in the host namespace and outside every
	// sandbox, connects to 127.0.0.2 while the sandboxed helper is refused.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	const rounds = 50
	var wg sync.WaitGroup
	outsideErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				outsideErr <- err
				return
			}
			c.Close()
		}
	}()
	ops := make([]string, rounds)
	for i := range ops {
		ops[i] = "tcp 127.0.0.2:0"
	}
	got, _ := env.run(gs, ops...)
	wg.Wait()
	select {
	case err := <-outsideErr:
		t.Fatalf("connect outside the sandbox: %v", err)
	default:
	}
	for i, e := range got {
		if e != syscall.EPERM {
			t.Fatalf("sandboxed connect %d to 127.0.0.2: errno %d, want EPERM", i, e)
		}
	}
	// The unsandboxed helper in the namespace reaches what the sandbox may not.
	if got, _ := env.run(nil, "tcp 10.1.2.3:80", "sendto 169.254.169.254:53"); got[0] != 0 || got[1] != 0 {
		t.Fatalf("outside the sandbox: errnos %v, want none", got)
	}

	// A child cgroup beneath the sandbox stays confined.
	sub := filepath.Join(gs.Path, "escape")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	procs, err := os.OpenFile(filepath.Join(sub, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer procs.Close()
	got, _ = env.runFiles(gs, []*os.File{procs}, "sub", "tcp 10.1.2.3:80", "tcp 10.1.2.3:8443")
	if got[0] != 0 || got[1] != syscall.EPERM || got[2] != 0 {
		t.Fatalf("in a child cgroup: errnos %v, want moved, EPERM, success", got)
	}

	// Two sandboxes, two policies, same destinations.
	a, _ := env.run(gs, "tcp 10.1.2.3:80", "tcp 127.0.0.1:0")
	b, _ := env.run(go_, "tcp 10.1.2.3:80", "tcp 127.0.0.1:0")
	if a[0] != syscall.EPERM || a[1] != syscall.EPERM || b[0] != 0 || b[1] != 0 {
		t.Fatalf("strict sandbox %v, open sandbox %v", a, b)
	}
	st, err := n.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if c := counter(st, events.OpConnect, false); c != rounds+3 {
		t.Fatalf("counted %d denied connects, want %d", c, rounds+3)
	}
}

// TestNetEntryWrites: an entry written while the sandbox runs allows at
// once, per port; deleted, it refuses again; removing the policy leaves
// nothing in the policy maps and refuses nothing more. (Which entries a
// policy needs, with the claims of learned addresses, is internal/egress's:
// TestUpdateAddrsClaims.)
func TestNetEntryWrites(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{})
	c := compileNet(t, policy.NetDeny, policy.LoopbackAll, "a.example.test", "b.example.test:443")
	g := env.sandbox(n, 4, c.Net, nil, false)
	a, b := c.Net.Domains[0], c.Net.Domains[1]
	addr := netip.MustParsePrefix("10.9.9.9/32")
	check := func(what string, want ...syscall.Errno) {
		t.Helper()
		got, _ := env.run(g, "tcp 10.9.9.9:443", "tcp 10.9.9.9:80")
		if got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("%s: errnos %v, want %v", what, got, want)
		}
	}
	check("nothing resolved", syscall.EPERM, syscall.EPERM)
	if err := n.WriteEntry(4, NetEntry{Prefix: addr, Port: b.Port}, b.Rule); err != nil {
		t.Fatal(err)
	}
	check("b resolved (port 443)", 0, syscall.EPERM)
	if err := n.WriteEntry(4, NetEntry{Prefix: addr, Port: a.Port}, a.Rule); err != nil {
		t.Fatal(err)
	}
	check("a and b resolved", 0, 0)
	if err := n.DeleteEntry(4, NetEntry{Prefix: addr, Port: a.Port}); err != nil {
		t.Fatal(err)
	}
	check("a deleted", 0, syscall.EPERM)
	env.rules[4].entries[NetEntry{Prefix: addr, Port: b.Port}] = b.Rule
	if err := env.rules[4].remove(); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.run(g, "tcp 10.1.2.3:80"); got[0] != 0 {
		t.Fatalf("after remove: errno %d, want none", got[0])
	}
	// Remove left nothing behind in the policy maps.
	for _, m := range []*ebpf.Map{n.objs.NetAllow4, n.objs.NetAllow6, n.objs.NetDeny4, n.objs.NetDeny6, n.objs.NetPolicies, n.objs.Sandboxes} {
		var k, v []byte
		if it := m.Iterate(); it.Next(&k, &v) {
			t.Errorf("map %v still has entries after Remove", m)
		}
	}
}
