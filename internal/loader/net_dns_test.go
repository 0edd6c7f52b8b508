//go:build linux

package loader

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// echoProxy stands in for the DNS proxy: it echoes UDP datagrams and TCP
// streams on 127.0.0.1 and ::1 at one port, inside the test's namespace.
func echoProxy(t *testing.T, env *netEnv) uint16 {
	var port uint16
	env.ns.Do(func() {
		for attempt := 0; attempt < 20 && port == 0; attempt++ {
			u4, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			p := u4.LocalAddr().(*net.UDPAddr).Port
			u6, err1 := net.ListenPacket("udp6", net.JoinHostPort("::1", itoa(p)))
			t4, err2 := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", itoa(p)))
			t6, err3 := net.Listen("tcp6", net.JoinHostPort("::1", itoa(p)))
			if err1 != nil || err2 != nil || err3 != nil {
				for _, c := range []io.Closer{u4, u6, t4, t6} {
					if c != nil && c != io.Closer((*net.UDPConn)(nil)) {
						_ = c.Close()
					}
				}
				continue
			}
			for _, pc := range []net.PacketConn{u4, u6} {
				t.Cleanup(func() { pc.Close() })
				go func() {
					buf := make([]byte, 512)
					for {
						n, from, err := pc.ReadFrom(buf)
						if err != nil {
							return
						}
						_, _ = pc.WriteTo(buf[:n], from)
					}
				}()
			}
			for _, l := range []net.Listener{t4, t6} {
				t.Cleanup(func() { l.Close() })
				go func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						go func() {
							defer c.Close()
							buf := make([]byte, 512)
							n, _ := c.Read(buf)
							_, _ = c.Write(buf[:n])
						}()
					}
				}()
			}
			port = uint16(p)
		}
	})
	if port == 0 {
		t.Fatal("no port free for UDP and TCP on 127.0.0.1 and ::1")
	}
	return port
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestNetDNSSteering sends queries to resolvers that do not exist, over
// UDP (connected and not) and TCP, IPv4, IPv6 and v4-mapped, and expects
// the stand-in proxy to answer them with the resolver's address as the
// reply's source; loopback itself stays refused, and nothing is steered
// before SetDNSProxy or after ClearDNSProxy.
func TestNetDNSSteering(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	port := echoProxy(t, env)
	c := compileNet(t, policy.NetDeny, policy.LoopbackNone)
	g := env.sandbox(n, 3, c.Net, nil, false)

	ops := []string{"dnsudp 10.53.0.1:53", "dnssendto 10.53.0.1:53", "dnstcp 10.53.0.1:53",
		"dnsudp [2001:db8::53]:53", "dnssendto [2001:db8::53]:53", "dnstcp [2001:db8::53]:53",
		"dnsudp [::ffff:10.53.0.1]:53", "dnssendto [::ffff:10.53.0.1]:53",
		"udp 10.53.0.1:54", "tcp 127.0.0.1:0"}
	got, _ := env.run(g, ops...)
	for i, op := range ops[:2] {
		if got[i] != syscall.EPERM {
			t.Errorf("before SetDNSProxy: %s: errno %d, want EPERM", op, got[i])
		}
	}
	drain(n.Events())

	if err := n.SetDNSProxy(3, netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback(), port); err != nil {
		t.Fatal(err)
	}
	got, _ = env.run(g, ops...)
	// Two denials: the port that is not 53, and loopback itself.
	if evs := drainAll(n.Events()); len(evs) != 2 {
		t.Errorf("events %+v, want the two denials", evs)
	}
	for i, op := range ops {
		want := syscall.Errno(0)
		if strings.HasPrefix(op, "udp") || strings.HasPrefix(op, "tcp") {
			want = syscall.EPERM
		}
		if got[i] != want {
			t.Errorf("%s: errno %d, want %d", op, got[i], want)
		}
	}
	// Outside the sandbox nothing is steered: the resolver does not exist.
	out, _ := env.run(nil, "dnssendto 127.0.0.1:53")
	if out[0] == 0 {
		t.Error("a query from outside the sandbox reached the proxy")
	}

	if err := n.ClearDNSProxy(3); err != nil {
		t.Fatal(err)
	}
	got, _ = env.run(g, "dnsudp 10.53.0.1:53")
	if got[0] != syscall.EPERM {
		t.Errorf("after ClearDNSProxy: errno %d, want EPERM", got[0])
	}
}

func drain(ch <-chan events.Event) {
	for {
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

// TestNetRawSockets: raw sockets are refused in every mode, ICMP ping
// sockets unless the policy allows all egress; outside a sandbox both work.
func TestNetRawSockets(t *testing.T) {
	env := newNetEnv(t)
	testutil.IP(t, "netns", "exec", env.ns.Name, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
	n := openNet(t, NetOptions{Backend: "test"})
	deny := env.sandbox(n, 1, compileNet(t, policy.NetDeny, policy.LoopbackAll).Net, nil, false)
	allow := env.sandbox(n, 2, compileNet(t, policy.NetAllow, policy.LoopbackAll).Net, nil, false)
	ops := []string{"raw 127.0.0.1:0", "raw [::1]:0", "ping 127.0.0.1:0", "ping [::1]:0"}
	for _, tc := range []struct {
		name string
		want []syscall.Errno
		run  func() []syscall.Errno
	}{
		{"outside", []syscall.Errno{0, 0, 0, 0}, func() []syscall.Errno { r, _ := env.run(nil, ops...); return r }},
		{"deny", []syscall.Errno{syscall.EPERM, syscall.EPERM, syscall.EPERM, syscall.EPERM}, func() []syscall.Errno { r, _ := env.run(deny, ops...); return r }},
		{"allow", []syscall.Errno{syscall.EPERM, syscall.EPERM, 0, 0}, func() []syscall.Errno { r, _ := env.run(allow, ops...); return r }},
	} {
		got := tc.run()
		for i := range ops {
			if got[i] != tc.want[i] {
				t.Errorf("%s: %s: errno %d, want %d", tc.name, ops[i], got[i], tc.want[i])
			}
		}
	}
	evs := nextEvents(t, n.Events(), 6)
	if evs[0].Kind != events.KindNet || evs[0].Path != "raw socket" || evs[2].Path != "icmp socket" {
		t.Errorf("events %+v", evs)
	}
}

// TestNetAddrInUse: a TCP connection through an allowed address counts as
// a use of it until the socket closes.
func TestNetAddrInUse(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	c := compileNet(t, policy.NetDeny, policy.LoopbackAll, "example.test")
	a := netip.MustParseAddr("10.9.9.9")
	g := env.sandbox(n, 4, c.Net, map[string][]netip.Addr{"example.test": {a}}, false)
	var port uint16
	env.ns.Do(func() {
		l, err := net.Listen("tcp4", "10.9.9.9:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		port = uint16(l.Addr().(*net.TCPAddr).Port)
	})
	inUse := func() bool {
		t.Helper()
		ok, err := n.AddrInUse(4, a)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if inUse() {
		t.Fatal("in use before any connection")
	}
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", env.ns.Name, self)
	cmd.Env = append(os.Environ(), netHelperEnv+"=hold "+netip.AddrPortFrom(a, port).String())
	fd, err := g.OpenFD()
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	h := testutil.StartHeld(t, cmd, int(fd.Fd()))
	line, err := bufio.NewReader(h.Out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "0" {
		t.Fatalf("hold: %q, %v", line, err)
	}
	if !inUse() {
		t.Error("not in use while the connection is open")
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if inUse() {
		t.Error("still in use after the socket closed")
	}
}

func drainAll(ch <-chan events.Event) []events.Event {
	var out []events.Event
	for {
		select {
		case ev := <-ch:
			out = append(out, ev)
		case <-time.After(100 * time.Millisecond):
			return out
		}
	}
}
