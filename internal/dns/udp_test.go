package dns

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestUDPMalformedAsMiekg: the proxy's own UDP loop answers what is not a
// plain query exactly as miekg's server, which served it before, does:
// nothing for a datagram too short or one that is itself a response,
// NOTIMP for another opcode, FORMERR for the rest.
func TestUDPMalformedAsMiekg(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		// As the proxy answers a query it cannot forward (to port 9).
		_ = w.WriteMsg(new(mdns.Msg).SetRcode(r, mdns.RcodeServerFailure))
	})}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.Shutdown() })
	p := startProxyTo(t, "127.0.0.1:9", newFakeSink(), "svc.test") // never forwards here
	proxy := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p.Port())

	q := new(mdns.Msg).SetQuestion("svc.test.", mdns.TypeA)
	q.Id = 0x1234
	good, _ := q.Pack()
	resp := *q
	resp.Response = true
	isResp, _ := resp.Pack()
	update := *q
	update.Opcode = mdns.OpcodeUpdate
	upd, _ := update.Pack()
	two := *q
	two.Question = append([]mdns.Question{q.Question[0]}, q.Question[0])
	twoQ, _ := two.Pack()
	cut := good[:len(good)-3]
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"short", good[:7]},
		{"response", isResp},
		{"opcode UPDATE", upd},
		{"two questions", twoQ},
		{"cut question", cut},
		{"trailing bytes", append(append([]byte{}, good...), 1, 2, 3)},
	} {
		want := rawExchange(t, netip.MustParseAddrPort(pc.LocalAddr().String()), c.b)
		got := rawExchange(t, proxy, c.b)
		if (want == nil) != (got == nil) {
			t.Errorf("%s: miekg answered %v, the proxy %v", c.name, want != nil, got != nil)
			continue
		}
		if want != nil && (want.Rcode != got.Rcode || want.Opcode != got.Opcode || want.Id != got.Id || !got.Response) {
			t.Errorf("%s: miekg answered rcode %d opcode %d id %d, the proxy rcode %d opcode %d id %d",
				c.name, want.Rcode, want.Opcode, want.Id, got.Rcode, got.Opcode, got.Id)
		}
	}
}

// rawExchange sends b to server and returns the reply, or nil when none
// comes within 300 ms.
func rawExchange(t *testing.T, server netip.AddrPort, b []byte) *mdns.Msg {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m := new(mdns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("reply from %s: %v", server, err)
	}
	return m
}

// TestUDPConcurrentForwards: queries waiting for the upstream do not hold
// up the others (the upstream answers none until it has seen them all),
// and the workers that served them end once they are answered.
func TestUDPConcurrentForwards(t *testing.T) {
	const n = 12
	var mu sync.Mutex
	var held []func()
	up := startRawUpstream(t, func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort) {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, func() { u.send(t, nil, answerA(q, 0, "10.1.1.1"), from) })
		if len(held) == n {
			for _, f := range held {
				f()
			}
		}
	})
	p := startProxyTo(t, up.addr, newFakeSink(), "svc.test")
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			m := new(mdns.Msg).SetQuestion("svc.test.", mdns.TypeA)
			c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
			r, _, err := c.Exchange(m, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p.Port()).String())
			if err != nil || len(r.Answer) != 1 {
				t.Errorf("query: %v %v", r, err)
			}
		})
	}
	wg.Wait()
	l := p.udpListeners[0]
	for deadline := time.Now().Add(5 * time.Second); l.workers.Load() > 2; {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still running after the burst", l.workers.Load())
		}
		time.Sleep(time.Millisecond)
	}
}
