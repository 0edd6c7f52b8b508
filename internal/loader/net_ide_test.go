//go:build linux

package loader

import (
	"fmt"
	"slices"
	"testing"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestIDELockRuleContract: the flag the kernel sets in an IDE lock event's
// rule id is the one the agent looks for.
func TestIDELockRuleContract(t *testing.T) {
	if ideLockRule != enforce.IDELockRule {
		t.Fatalf("enum aigate_rule_flag's AIGATE_RULE_IDE_LOCK is %#x, enforce.IDELockRule %#x", ideLockRule, enforce.IDELockRule)
	}
}

// TestNetIDEPorts: a client outside the sandbox cannot connect over
// loopback to the sandbox's listeners on a port guarded for it (bound to
// 127.0.0.1 or to the wildcard address, IPv4 or IPv6), and each attempt is
// reported with the port's rule; a listener of the sandbox on another
// port, and one of another sandbox on a port guarded only for the first,
// stay reachable; once the policy is removed the port is free again.
func TestNetIDEPorts(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{})
	c := compileNet(t, policy.NetAllow, policy.LoopbackOwn)
	g := env.sandbox(n, 1, c.Net, nil, false)
	other := env.sandbox(n, 2, c.Net, nil, false)

	p4, stop1 := env.serve(g, "tcp", "127.0.0.1:0")
	defer stop1()
	p6, stop2 := env.serve(g, "tcp", "[::]:0")
	defer stop2()
	free, stop3 := env.serve(g, "tcp", "127.0.0.1:0")
	defer stop3()
	po, stop4 := env.serve(other, "tcp", "127.0.0.1:0")
	defer stop4()
	for _, p := range []uint16{p4, p6, po} {
		if err := n.GuardIDEPort(g.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	// Twice is a no-op.
	if err := n.GuardIDEPort(g.ID, p4); err != nil {
		t.Fatal(err)
	}
	got, err := n.IDEPorts(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []uint16{p4, p6, po}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("IDEPorts = %v, want %v", got, want)
	}

	refused := map[string]uint16{
		fmt.Sprintf("127.0.0.1:%d", p4): p4,
		fmt.Sprintf("127.0.0.1:%d", p6): p6,
		fmt.Sprintf("[::1]:%d", p6):     p6,
	}
	for addr := range refused {
		if err := dialFrom(t, env.ns, addr); err == nil {
			t.Errorf("a client outside connected to %s, a guarded port of the sandbox", addr)
		}
	}
	seen := map[uint16]int{}
	for _, ev := range drainAll(n.Events()) {
		if ev.Op != events.OpConnect || ev.CgroupID != g.ID || ev.Path != "connection to an IDE lock's port" ||
			ev.Rule != ideLockRule|uint32(ev.Addr.Port()) || !ev.Addr.Addr().IsLoopback() {
			t.Errorf("unexpected event %+v", ev)
			continue
		}
		seen[ev.Addr.Port()]++
	}
	if seen[p4] == 0 || seen[p6] < 2 {
		t.Errorf("events per port %v, want at least one for %d and two for %d", seen, p4, p6)
	}
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", free), fmt.Sprintf("127.0.0.1:%d", po)} {
		if err := dialFrom(t, env.ns, addr); err != nil {
			t.Errorf("client to %s (not guarded for its sandbox): %v", addr, err)
		}
	}
	noMoreEvents(t, n.Events())

	if err := n.RemovePolicy(1, UnixAllow{}, g.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := n.IDEPorts(g.ID); err != nil || len(got) != 0 {
		t.Errorf("after RemovePolicy: IDEPorts = %v, %v", got, err)
	}
	if err := n.WriteSettings(1, c.Net); err != nil {
		t.Fatal(err)
	}
	if err := dialFrom(t, env.ns, fmt.Sprintf("127.0.0.1:%d", p4)); err != nil {
		t.Errorf("after RemovePolicy: %v", err)
	}
}

// guardOnePort guards a port no benchmark uses for the sandbox in
// cgroupID, so that the ingress program's port lookup has an entry of
// the sandbox's to miss.
func guardOnePort(b *testing.B, n *Net, cgroupID uint64) {
	if err := n.GuardIDEPort(cgroupID, 1); err != nil {
		b.Fatal(err)
	}
}
