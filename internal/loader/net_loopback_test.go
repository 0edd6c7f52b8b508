//go:build linux

package loader

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// serve starts a helper in g that binds proto (tcp or udp) at addr and
// holds the socket until the returned stop is called; it returns the port.
func (e *netEnv) serve(g interface{ OpenFD() (*os.File, error) }, proto, addr string) (uint16, func()) {
	e.t.Helper()
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", e.ns.Name, self)
	cmd.Env = append(os.Environ(), netHelperEnv+"=serve "+proto+" "+addr)
	fd, err := g.OpenFD()
	if err != nil {
		e.t.Fatal(err)
	}
	defer fd.Close()
	h := testutil.StartHeld(e.t, cmd, int(fd.Fd()))
	line, err := bufio.NewReader(h.Out).ReadString('\n')
	var errno, port int
	if _, serr := fmt.Sscan(line, &errno, &port); err != nil || serr != nil || errno != 0 {
		e.t.Fatalf("serve %s %s: %q, %v", proto, addr, line, err)
	}
	return uint16(port), func() {
		if err := h.Stop(); err != nil {
			e.t.Error(err)
		}
	}
}

// listenOutside opens a listener (tcp) or a bound socket (udp) in the
// test's namespace, outside every sandbox, closed when the test ends.
func (e *netEnv) listenOutside(proto, addr string) uint16 {
	e.t.Helper()
	var port uint16
	e.ns.Do(func() {
		if proto == "udp" {
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				e.t.Fatal(err)
			}
			e.t.Cleanup(func() { c.Close() })
			port = uint16(c.LocalAddr().(*net.UDPAddr).Port)
			return
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { l.Close() })
		testutil.AcceptAll(e.t, l)
		port = uint16(l.Addr().(*net.TCPAddr).Port)
	})
	return port
}

// TestNetLoopbackOwn: with allow_loopback: own a sandbox reaches the
// listeners its own processes created (from another process of the
// sandbox, over IPv4, IPv6, v4-mapped and the wildcard address, TCP and
// UDP) and the loopback ports allow_net lists, and nothing else on loopback:
// the refusals are reported with the allow_loopback rule. A server that
// exits and comes back is reachable again; once an outside process holds
// its port, that port is refused.
func TestNetLoopbackOwn(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{})

	out4 := env.listenOutside("tcp", "127.0.0.1:0")
	out6 := env.listenOutside("tcp", "[::1]:0")
	outU := env.listenOutside("udp", "127.0.0.1:0")
	listed := env.listenOutside("tcp", "127.0.0.1:0")
	listed6 := env.listenOutside("tcp", "[::1]:0")

	c := compileNet(t, policy.NetDeny, policy.LoopbackOwn,
		fmt.Sprintf("127.0.0.1:%d", listed), fmt.Sprintf("[::1]:%d", listed6))
	if c.Net.LoopbackRule == 0 || c.Rules[c.Net.LoopbackRule-1].Pattern != "allow_loopback: own" {
		t.Fatalf("loopback rule %d of %+v", c.Net.LoopbackRule, c.Rules)
	}
	g := env.sandbox(n, 1, c.Net, nil, false)

	own4, stop4 := env.serve(g, "tcp", "127.0.0.1:0")
	own6, stop6 := env.serve(g, "tcp", "[::1]:0")
	ownAny, stopAny := env.serve(g, "tcp", "[::]:0")
	ownU, stopU := env.serve(g, "udp", "127.0.0.1:0")
	defer stop6()
	defer stopAny()
	defer stopU()

	ops := []string{
		fmt.Sprintf("tcp 127.0.0.1:%d", own4),
		fmt.Sprintf("tcp [::1]:%d", own6),
		fmt.Sprintf("tcp [::ffff:127.0.0.1]:%d", own4),
		fmt.Sprintf("tcp 127.0.0.1:%d", ownAny), // dual-stack wildcard listener
		fmt.Sprintf("tcp 0.0.0.0:%d", ownAny),
		fmt.Sprintf("sendto 127.0.0.1:%d", ownU),
		fmt.Sprintf("tcp 127.0.0.1:%d", listed),
		fmt.Sprintf("tcp [::1]:%d", listed6),
		fmt.Sprintf("tcp 127.0.0.1:%d", out4),
		fmt.Sprintf("tcp [::1]:%d", out6),
		fmt.Sprintf("tcp [::ffff:127.0.0.1]:%d", out4),
		fmt.Sprintf("sendto 127.0.0.1:%d", outU),
		fmt.Sprintf("udp [::1]:%d", outU),
	}
	want := []syscall.Errno{0, 0, 0, 0, 0, 0, 0, 0, syscall.EPERM, syscall.EPERM, syscall.EPERM, syscall.EPERM, syscall.EPERM}
	got, pid := env.run(g, ops...)
	for i := range ops {
		if got[i] != want[i] {
			t.Errorf("%s: errno %v (%d), want %v", ops[i], got[i], got[i], want[i])
		}
	}
	evs := nextEvents(t, n.Events(), 5)
	noMoreEvents(t, n.Events())
	ap := func(a string, port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(a), port) }
	wantEv := []struct {
		op   events.Op
		addr netip.AddrPort
	}{
		{events.OpConnect, ap("127.0.0.1", out4)},
		{events.OpConnect, ap("::1", out6)},
		{events.OpConnect, ap("::ffff:127.0.0.1", out4)},
		{events.OpSend, ap("127.0.0.1", outU)},
		{events.OpConnect, ap("::1", outU)},
	}
	for i, ev := range evs {
		w := wantEv[i]
		if ev.Rule != uint32(c.Net.LoopbackRule) || ev.Op != w.op || ev.Addr != w.addr || ev.Audit || ev.TGID != uint32(pid) && ev.CgroupID != g.ID {
			t.Errorf("event %d: %+v, want op %v to %v rule %d", i, ev, w.op, w.addr, c.Net.LoopbackRule)
		}
	}

	// Control: outside every sandbox the same listeners answer.
	ctl, _ := env.run(nil, fmt.Sprintf("tcp 127.0.0.1:%d", out4), fmt.Sprintf("tcp [::1]:%d", out6))
	if ctl[0] != 0 || ctl[1] != 0 {
		t.Fatalf("outside the sandbox: errnos %v, want none", ctl)
	}

	// The server exits and a new process of the sandbox serves the same
	// port again: reachable.
	stop4()
	again, stopAgain := env.serve(g, "tcp", fmt.Sprintf("127.0.0.1:%d", own4))
	if got, _ := env.run(g, fmt.Sprintf("tcp 127.0.0.1:%d", again)); got[0] != 0 {
		t.Errorf("own server back on %d: errno %v", again, got[0])
	}
	// It exits and an outside process takes its port: refused.
	stopAgain()
	reused := env.listenOutside("tcp", fmt.Sprintf("127.0.0.1:%d", own4))
	if got, _ := env.run(g, fmt.Sprintf("tcp 127.0.0.1:%d", reused)); got[0] != syscall.EPERM {
		t.Errorf("port %d reused outside the sandbox: errno %v, want EPERM", reused, got[0])
	}
	ev := nextEvents(t, n.Events(), 1)[0]
	if ev.Rule != uint32(c.Net.LoopbackRule) || ev.Addr.Port() != reused {
		t.Errorf("event %+v, want rule %d port %d", ev, c.Net.LoopbackRule, reused)
	}
}

// TestNetLoopbackOtherSandbox: a listener of one sandbox is not "own" to
// another sandbox.
func TestNetLoopbackOtherSandbox(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{})
	c := compileNet(t, policy.NetDeny, policy.LoopbackOwn)
	a := env.sandbox(n, 1, c.Net, nil, false)
	b := env.sandbox(n, 2, c.Net, nil, false)
	port, stop := env.serve(a, "tcp", "127.0.0.1:0")
	defer stop()
	dst := fmt.Sprintf("tcp 127.0.0.1:%d", port)
	if got, _ := env.run(a, dst); got[0] != 0 {
		t.Errorf("from its own sandbox: errno %v", got[0])
	}
	if got, _ := env.run(b, dst); got[0] != syscall.EPERM {
		t.Errorf("from another sandbox: errno %v, want EPERM", got[0])
	}
	if ev := nextEvents(t, n.Events(), 1)[0]; ev.CgroupID != b.ID || ev.Addr.Port() != port {
		t.Errorf("event %+v, want policy 2 port %d", ev, port)
	}
	if !strings.Contains(c.Rules[c.Net.LoopbackRule-1].Pattern, "own") {
		t.Errorf("rule %+v", c.Rules[c.Net.LoopbackRule-1])
	}
}
