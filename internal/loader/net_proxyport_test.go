//go:build linux

package loader

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestNetOtherSandboxProxy: a sandbox cannot send to another sandbox's DNS
// proxy port directly, even with allow_loopback: all and the port listed,
// over IPv4, IPv6 and TCP; its own proxy stays reachable. An audit-mode
// sandbox is let through and reported. When the other proxy moves or
// stops, its old port is an ordinary loopback port again.
func TestNetOtherSandboxProxy(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{})
	lo4, lo6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	portA := env.listenOutside("udp", "127.0.0.1:0")
	portB := env.listenOutside("udp", "127.0.0.1:0")
	env.listenOutside("tcp", fmt.Sprintf("127.0.0.1:%d", portB))

	a := compileNet(t, policy.NetDeny, policy.LoopbackAll, fmt.Sprintf("127.0.0.1:%d", portB))
	b := compileNet(t, policy.NetDeny, policy.LoopbackAll)
	gA := env.sandbox(n, 1, a.Net, nil, false)
	gB := env.sandbox(n, 2, b.Net, nil, true)
	if err := n.SetDNSProxy(1, lo4, lo6, portA); err != nil {
		t.Fatal(err)
	}
	if err := n.SetDNSProxy(2, lo4, lo6, portB); err != nil {
		t.Fatal(err)
	}

	ops := []string{
		fmt.Sprintf("sendto 127.0.0.1:%d", portB),
		fmt.Sprintf("sendto [::1]:%d", portB),
		fmt.Sprintf("udp [::ffff:127.0.0.1]:%d", portB),
		fmt.Sprintf("tcp 127.0.0.1:%d", portB),
		fmt.Sprintf("sendto 127.0.0.1:%d", portA),
	}
	want := []syscall.Errno{syscall.EPERM, syscall.EPERM, syscall.EPERM, syscall.EPERM, 0}
	got, _ := env.run(gA, ops...)
	for i := range ops {
		if got[i] != want[i] {
			t.Errorf("%s from A: errno %v, want %v", ops[i], got[i], want[i])
		}
	}
	evs := nextEvents(t, n.Events(), 4)
	for _, ev := range evs {
		if ev.CgroupID != gA.ID || ev.Addr.Port() != portB || ev.Rule != uint32(a.Net.DenyRule) || ev.Audit {
			t.Errorf("event %+v: want A's refusal to port %d by rule %d", ev, portB, a.Net.DenyRule)
		}
	}
	// B audits: allowed, and reported.
	if got, _ := env.run(gB, fmt.Sprintf("sendto 127.0.0.1:%d", portA)); got[0] != 0 {
		t.Errorf("audit sandbox: errno %v", got[0])
	}
	if ev := nextEvents(t, n.Events(), 1)[0]; ev.CgroupID != gB.ID || !ev.Audit || ev.Addr.Port() != portA {
		t.Errorf("event %+v: want B's audit event to port %d", ev, portA)
	}
	noMoreEvents(t, n.Events())

	// B's proxy moves, then stops: its old port is no proxy's any more.
	if err := n.SetDNSProxy(2, lo4, lo6, portB+1); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.run(gA, fmt.Sprintf("sendto 127.0.0.1:%d", portB), fmt.Sprintf("sendto 127.0.0.1:%d", portB+1)); got[0] != 0 || got[1] != syscall.EPERM {
		t.Errorf("after the move: errnos %v, want [0 EPERM]", got)
	}
	nextEvents(t, n.Events(), 1)
	if err := n.ClearDNSProxy(2); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.run(gA, fmt.Sprintf("sendto 127.0.0.1:%d", portB+1)); got[0] != 0 {
		t.Errorf("after the stop: errno %v", got[0])
	}
	noMoreEvents(t, n.Events())
}
