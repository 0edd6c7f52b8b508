//go:build linux

package dns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// BenchmarkQuery compares one A query sent straight to the (fake, loopback)
// upstream with the same query through the proxy, which matches the name,
// forwards it (or answers from its cache) and updates the allow map: the
// ratio of the two is the proxy's added latency. Direct and proxied rounds
// of b.N queries alternate over bench.Rounds() rounds (bench/README.md).
// (The kernel's steering adds one sock_addr program run per send and
// receive, measured by the loader's benchmarks.) The cases:
//
//	cached    a name asked again within its TTL: the proxy answers from
//	          its cache (cache.go) and learns the addresses again
//	uncached  a name whose answer has a TTL of 0: every query is
//	          forwarded to the upstream
//	member    as cached, to a proxy that also asks sock_diag whether the
//	          client's socket is in its sandbox's cgroup, as the agent's
//	          proxies do (here the benchmark's own cgroup; needs root)
func BenchmarkQuery(b *testing.B) {
	up := testutil.StartFakeDNS(b)
	up.Set("svc.test", "svc.test. 300 IN A 10.1.2.3")
	up.Set("once.test", "once.test. 0 IN A 10.1.2.4")
	c := compile(b, "svc.test", "once.test")
	p, err := Start(Config{PolicyID: 1, Net: c.Net, Sink: newFakeSink(), Upstreams: []string{up.Addr}, TTL: policy.DNS{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	proxy := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p.Port()).String()
	cl := &mdns.Client{Net: "udp"}
	for _, bc := range []struct{ name, qname string }{{"cached", "svc.test."}, {"uncached", "once.test."}, {"member", "svc.test."}} {
		b.Run(bc.name, func(b *testing.B) {
			proxy := proxy
			if bc.name == "member" {
				proxy = memberProxy(b, c, up.Addr)
			}
			m := new(mdns.Msg).SetQuestion(bc.qname, mdns.TypeA)
			query := func(server string) bench.Measure { return exchangeN(b, cl, m, server) }
			r, err := bench.Pair(bench.Rounds(), query(up.Addr), query(proxy))
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
		})
	}
}

// memberProxy starts a proxy for the benchmark's own cgroup, with the
// sock_diag check of its clients, and returns its address.
func memberProxy(b *testing.B, c *policy.Compiled, upstream string) string {
	testutil.RequireRoot(b)
	cg, err := cgroup.ProcessCgroup(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	root, err := cgroup.Mountpoint()
	if err != nil {
		b.Fatal(err)
	}
	p, err := Start(Config{PolicyID: 1, Net: c.Net, Sink: newFakeSink(), Upstreams: []string{upstream}, CgroupPath: filepath.Join(root, cg)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	if p.members == nil {
		testutil.SkipUnlessKernel(b, "no sock_diag check of the proxy's clients on this kernel")
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p.Port()).String()
}

// BenchmarkRelayFloor measures the floor under BenchmarkQuery/uncached: a
// bare relay, measured the same way against the same fake upstream, that
// reads a query, writes it to the upstream over a socket of the proxy's
// pool (upstream.go), reads the reply and writes it back, parsing,
// matching and learning nothing (issue #15):
//
//	reuse  one upstream socket for every query
//	fresh  a fresh socket, so a fresh random port, per query, taken from
//	       the pool and given back after the answer, as the proxy does
//
// fresh against reuse is the price of a fresh port per query; reuse
// against 1x the price of the second round trip itself; the proxy against
// fresh its own work.
func BenchmarkRelayFloor(b *testing.B) {
	for _, fresh := range []bool{false, true} {
		name := "reuse"
		if fresh {
			name = "fresh"
		}
		b.Run(name, func(b *testing.B) { relayFloor(b, fresh) })
	}
}

func relayFloor(b *testing.B, fresh bool) {
	up := testutil.StartFakeDNS(b)
	up.Set("once.test", "once.test. 0 IN A 10.1.2.4")
	pool := newUpstreamPool(up.Addr)
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	relayErr := make(chan error, 1)
	go func() { relayErr <- relay(l, pool, fresh) }()
	b.Cleanup(func() {
		l.Close()
		if err := <-relayErr; err != nil {
			b.Error(err)
		}
		pool.close()
	})
	cl := &mdns.Client{Net: "udp"}
	m := new(mdns.Msg).SetQuestion("once.test.", mdns.TypeA)
	query := func(server string) bench.Measure { return exchangeN(b, cl, m, server) }
	r, err := bench.Pair(bench.Rounds(), query(up.Addr), query(l.LocalAddr().String()))
	if err != nil {
		b.Fatal(err)
	}
	r.Report(b)
}

// relay serves l until it is closed.
func relay(l *net.UDPConn, pool *upstreamPool, fresh bool) error {
	c, err := pool.take()
	if err != nil {
		return err
	}
	defer func() { c.Close() }()
	buf, reply := make([]byte, udpQueryMax), make([]byte, mdns.MaxMsgSize)
	for {
		n, from, err := l.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil // closed: the benchmark is over
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return err
		}
		m, err := c.Read(reply)
		if err != nil {
			return err
		}
		if _, err := l.WriteToUDPAddrPort(reply[:m], from); err != nil {
			return err
		}
		if fresh {
			pool.done(c) // closes c and opens the pool back up
			if c, err = pool.take(); err != nil {
				return err
			}
		}
	}
}

// exchangeN is the measured side of a DNS benchmark: b.N queries m sent
// to server, each answered with one record.
func exchangeN(b *testing.B, cl *mdns.Client, m *mdns.Msg, server string) bench.Measure {
	return func() (float64, error) {
		return bench.Batched(b.N, func() error {
			r, _, err := cl.Exchange(m, server)
			if err != nil {
				return err
			}
			if len(r.Answer) != 1 {
				return fmt.Errorf("query via %s: %d answers, want 1", server, len(r.Answer))
			}
			return nil
		})
	}
}
