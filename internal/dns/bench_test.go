//go:build linux

package dns

import (
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/aigate-dev/aigate/internal/policy"
)

// BenchmarkQuery compares one A query sent straight to the (fake, loopback)
// upstream with the same query through the proxy, which matches the name,
// forwards it and updates the allow map: the ratio of the two is the
// proxy's added latency. (The kernel's steering adds one sock_addr program
// run per send and receive, measured by the loader's benchmarks.)
func BenchmarkQuery(b *testing.B) {
	up := StartUpstream(b)
	up.Set("svc.test", "svc.test. 300 IN A 10.1.2.3")
	c := compile(b, "svc.test")
	p, err := Start(Config{PolicyID: 1, Net: c.Net, Sink: newFakeSink(), Upstreams: []string{up.Addr}, TTL: policy.DNS{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	proxy := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p.Port()).String()
	for _, bc := range []struct{ name, server string }{{"direct", up.Addr}, {"proxy", proxy}} {
		b.Run(bc.name, func(b *testing.B) {
			cl := &mdns.Client{Net: "udp"}
			m := new(mdns.Msg).SetQuestion("svc.test.", mdns.TypeA)
			for b.Loop() {
				r, _, err := cl.Exchange(m, bc.server)
				if err != nil || len(r.Answer) != 1 {
					b.Fatalf("%v %v", r, err)
				}
			}
		})
	}
}
