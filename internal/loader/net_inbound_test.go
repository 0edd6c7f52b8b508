//go:build linux

package loader

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// peer puts a second network namespace on a veth pair with the test's:
// the sandbox side has 10.77.0.1 and fd77::1, the peer 10.77.0.2 and
// fd77::2. Connections from the peer come from another host as far as the
// sandbox's namespace can tell.
func (e *netEnv) peer() *testutil.NetNS {
	e.t.Helper()
	p := testutil.NewNetNS(e.t, e.ns.Name+"-peer")
	a, b := "aiv"+strings.TrimPrefix(e.ns.Name, "aigate-net-"), "aip"+strings.TrimPrefix(e.ns.Name, "aigate-net-")
	a, b = a[:min(len(a), 15)], b[:min(len(b), 15)]
	testutil.IP(e.t, "link", "add", a, "netns", e.ns.Name, "type", "veth", "peer", "name", b, "netns", p.Name)
	testutil.IP(e.t, "-n", e.ns.Name, "addr", "add", "10.77.0.1/24", "dev", a)
	testutil.IP(e.t, "-n", e.ns.Name, "addr", "add", "fd77::1/64", "dev", a, "nodad")
	testutil.IP(e.t, "-n", p.Name, "addr", "add", "10.77.0.2/24", "dev", b)
	testutil.IP(e.t, "-n", p.Name, "addr", "add", "fd77::2/64", "dev", b, "nodad")
	testutil.IP(e.t, "-n", e.ns.Name, "link", "set", a, "up")
	testutil.IP(e.t, "-n", p.Name, "link", "set", b, "up")
	return p
}

// dialFrom connects from ns to addr and reads the first byte; nil when a
// connection was made.
func dialFrom(t *testing.T, ns *testutil.NetNS, addr string) error {
	t.Helper()
	var err error
	ns.Do(func() {
		var c net.Conn
		c, err = net.DialTimeout("tcp", addr, 1500*time.Millisecond)
		if err == nil {
			c.Close()
		}
	})
	return err
}

// TestNetInbound: under net: deny a peer on another host (a namespace over
// a veth pair) cannot connect to a server in the sandbox bound to the
// wildcard address, over IPv4 or IPv6, and each attempt is reported with
// the peer's address; a client on the same machine still reaches it; with
// allow_inbound, and under net: allow, the peer connects.
func TestNetInbound(t *testing.T) {
	// The VM's cloud kernel has veth only as a module it cannot load.
	testutil.HostOnly(t)
	env := newNetEnv(t)
	n := openNet(t, NetOptions{})
	peer := env.peer()

	deny := compileNet(t, policy.NetDeny, policy.LoopbackOwn)
	open := compileNet(t, policy.NetDeny, policy.LoopbackOwn)
	open.Net.Inbound = true
	allow := compileNet(t, policy.NetAllow, policy.LoopbackOwn)
	gDeny := env.sandbox(n, 1, deny.Net, nil, false)
	gOpen := env.sandbox(n, 2, open.Net, nil, false)
	gAllow := env.sandbox(n, 3, allow.Net, nil, false)

	pDeny, stop1 := env.serve(gDeny, "tcp", "[::]:0")
	defer stop1()
	pOpen, stop2 := env.serve(gOpen, "tcp", "0.0.0.0:0")
	defer stop2()
	pAllow, stop3 := env.serve(gAllow, "tcp", "[::]:0")
	defer stop3()

	for _, addr := range []string{fmt.Sprintf("10.77.0.1:%d", pDeny), fmt.Sprintf("[fd77::1]:%d", pDeny)} {
		if err := dialFrom(t, peer, addr); err == nil {
			t.Errorf("the peer connected to %s in a net: deny sandbox", addr)
		}
	}
	evs := drainAll(n.Events())
	want := map[netip.AddrPort]bool{
		netip.MustParseAddrPort(fmt.Sprintf("10.77.0.2:%d", pDeny)): false,
		netip.MustParseAddrPort(fmt.Sprintf("[fd77::2]:%d", pDeny)): false,
	}
	for _, ev := range evs {
		if _, ok := want[ev.Addr]; !ok || ev.Path != "inbound connection" || ev.Op != events.OpConnect ||
			ev.Rule != uint32(deny.Net.DenyRule) || ev.CgroupID != gDeny.ID {
			t.Errorf("unexpected event %+v", ev)
			continue
		}
		want[ev.Addr] = true
	}
	for a, seen := range want {
		if !seen {
			t.Errorf("no event for the attempt from %s: %+v", a, evs)
		}
	}
	// The same machine: a client outside the sandbox, over loopback and
	// over the veth address (which Linux delivers through loopback).
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", pDeny), fmt.Sprintf("10.77.0.1:%d", pDeny)} {
		if err := dialFrom(t, env.ns, addr); err != nil {
			t.Errorf("local client to %s: %v", addr, err)
		}
	}
	for _, addr := range []string{fmt.Sprintf("10.77.0.1:%d", pOpen), fmt.Sprintf("[fd77::1]:%d", pAllow)} {
		if err := dialFrom(t, peer, addr); err != nil {
			t.Errorf("peer to %s (inbound allowed): %v", addr, err)
		}
	}
	noMoreEvents(t, n.Events())
}
