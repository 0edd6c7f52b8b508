//go:build linux

package dns

import (
	"net"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// BenchmarkExpRelay: the least a forwarding proxy can do in Go: read a
// query, write it to a connected upstream socket, read the reply, write it
// back. No parsing, no policy, one socket reused (no randomisation).
func BenchmarkExpRelay(b *testing.B) {
	b.Run("reuse", func(b *testing.B) { expRelay(b, false) })
	b.Run("fresh", func(b *testing.B) { expRelay(b, true) })
}

func expRelay(b *testing.B, fresh bool) {
	up := testutil.StartFakeDNS(b)
	up.Set("once.test", "once.test. 0 IN A 10.1.2.4")
	ua, _ := net.ResolveUDPAddr("udp", up.Addr)
	l, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer l.Close()
	uc, _ := net.DialUDP("udp", nil, ua)
	go func() {
		buf := make([]byte, 1500)
		rb := make([]byte, 1500)
		for {
			n, from, err := l.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			uc.Write(buf[:n])
			m, err := uc.Read(rb)
			if err != nil {
				return
			}
			l.WriteToUDPAddrPort(rb[:m], from)
			if fresh {
				uc.Close()
				uc, _ = net.DialUDP("udp", nil, ua)
			}
		}
	}()
	cl := &mdns.Client{Net: "udp"}
	m := new(mdns.Msg).SetQuestion("once.test.", mdns.TypeA)
	q := func(server string) bench.Measure {
		return func() (float64, error) {
			return bench.Batched(b.N, func() error { _, _, err := cl.Exchange(m, server); return err })
		}
	}
	r, err := bench.Pair(bench.Rounds(), q(up.Addr), q(l.LocalAddr().String()))
	if err != nil {
		b.Fatal(err)
	}
	r.Report(b)
}
