package dns

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
)

// rawUpstream is an upstream resolver whose replies the test writes: reply
// gets each query and the address it came from, and sends what it likes
// through conn (or other sockets).
type rawUpstream struct {
	conn *net.UDPConn
	addr string

	mu   sync.Mutex
	seen []seenQuery
}

type seenQuery struct {
	from netip.AddrPort
	id   uint16
}

func startRawUpstream(t *testing.T, reply func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort)) *rawUpstream {
	t.Helper()
	return startRawUpstreamAt(t, netip.MustParseAddr("127.0.0.1"), reply)
}

func startRawUpstreamAt(t *testing.T, at netip.Addr, reply func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort)) *rawUpstream {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(at, 0)))
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{conn: c, addr: c.LocalAddr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			q := new(mdns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			u.mu.Lock()
			u.seen = append(u.seen, seenQuery{from, q.Id})
			u.mu.Unlock()
			reply(u, q, from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return u
}

// send writes m to the proxy's socket at to, from conn or, when from is
// given, from that socket instead.
func (u *rawUpstream) send(t *testing.T, from *net.UDPConn, m *mdns.Msg, to netip.AddrPort) {
	b, err := m.Pack()
	if err != nil {
		t.Error(err)
		return
	}
	if from == nil {
		from = u.conn
	}
	if _, err := from.WriteToUDPAddrPort(b, to); err != nil {
		t.Error(err)
	}
}

func (u *rawUpstream) queries() []seenQuery {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenQuery(nil), u.seen...)
}

// answerA is the reply to q with one A record for its name.
func answerA(q *mdns.Msg, ttl uint32, addr string) *mdns.Msg {
	r := new(mdns.Msg).SetReply(q)
	r.Answer = append(r.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: ttl}, A: net.ParseIP(addr).To4()})
	return r
}

func startProxyTo(t *testing.T, upstream string, sink *fakeSink, allow ...string) *Proxy {
	t.Helper()
	p, err := Start(Config{PolicyID: 1, Net: compile(t, allow...).Net, Sink: sink, Upstreams: []string{upstream}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func askProxy(t *testing.T, p *Proxy, name string, id uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg).SetQuestion(name, mdns.TypeA)
	m.Id = id
	c := &mdns.Client{Net: "udp", Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p.Port()).String())
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

// TestForwardFreshSocketAndID: the upstream sockets are opened ahead of
// the queries and used again (upstream.go), yet every forwarded query
// leaves from a port of its own, one the kernel picked, with an ID of its
// own, not the client's: the randomisation that makes a forged reply hard
// to land.
func TestForwardFreshSocketAndID(t *testing.T) {
	up := startRawUpstream(t, func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort) {
		u.send(t, nil, answerA(q, 0, "10.1.1.1"), from) // TTL 0: never cached
	})
	p := startProxyTo(t, up.addr, newFakeSink(), "once.test")
	const n = 24
	for range n {
		if r := askProxy(t, p, "once.test.", 4242); r.Id != 4242 || len(r.Answer) != 1 {
			t.Fatalf("answer: %v", r)
		}
	}
	ports, ids := map[uint16]bool{}, map[uint16]bool{}
	for _, q := range up.queries() {
		ports[q.from.Port()] = true
		ids[q.id] = true
	}
	// A random port or ID repeats now and then (2^15 ports, 2^16 IDs); a
	// port used twice, or the client's ID passed on, repeats always.
	if len(ports) < n-2 {
		t.Errorf("%d queries left from %d ports: ports are reused", n, len(ports))
	}
	if len(ids) < n-2 || ids[4242] && len(ids) < n {
		t.Errorf("%d queries carried %d IDs (the client's, 4242, among them: %v)", n, len(ids), ids[4242])
	}
	if u := p.pools[0]; u.pooledSize() == 0 {
		t.Error("no socket opened ahead of the next query")
	}
}

// TestForwardIPv6Upstream: the pool opens IPv6 sockets for an IPv6
// upstream.
func TestForwardIPv6Upstream(t *testing.T) {
	up := startRawUpstreamAt(t, netip.IPv6Loopback(), func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort) {
		u.send(t, nil, answerA(q, 0, "10.1.1.1"), from)
	})
	p := startProxyTo(t, up.addr, newFakeSink(), "svc.test")
	for range 3 {
		if r := askProxy(t, p, "svc.test.", 5); len(r.Answer) != 1 {
			t.Fatalf("answer: %v", r)
		}
	}
	if p.pools[0] == nil {
		t.Fatal("no pool for an IPv6 upstream")
	}
	if q := up.queries(); len(q) != 3 || !q[0].from.Addr().Is6() {
		t.Errorf("upstream saw %v", q)
	}
}

// TestForwardRefusesForeignReplies: a reply counts only if it comes from
// the upstream's address and port, carries the query's ID and answers its
// question; forged ones are read past, and their addresses never reach the
// client or the allow map.
func TestForwardRefusesForeignReplies(t *testing.T) {
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	up := startRawUpstream(t, func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort) {
		u.send(t, other, answerA(q, 300, "10.6.6.1"), from) // another port
		wrongID := answerA(q, 300, "10.6.6.2")
		wrongID.Id = q.Id + 1
		u.send(t, nil, wrongID, from)
		wrongQ := answerA(q, 300, "10.6.6.3")
		wrongQ.Question[0].Name = "other.test."
		wrongQ.Answer[0].Header().Name = "other.test."
		u.send(t, nil, wrongQ, from)
		notReply := answerA(q, 300, "10.6.6.4")
		notReply.Response = false
		u.send(t, nil, notReply, from)
		u.send(t, nil, answerA(q, 300, "10.1.1.1"), from)
	})
	sink := newFakeSink()
	p := startProxyTo(t, up.addr, sink, "svc.test")
	r := askProxy(t, p, "svc.test.", 7)
	if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "10.1.1.1" {
		t.Fatalf("answer %v, want only the upstream's 10.1.1.1", r.Answer)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, a := range []string{"10.6.6.1", "10.6.6.2", "10.6.6.3", "10.6.6.4"} {
		for _, m := range sink.addrs {
			if m[netip.MustParseAddr(a)] {
				t.Errorf("forged %s in the allow map", a)
			}
		}
	}
}

// TestForwardDropsEarlyDatagrams: a pooled socket waits open for its
// query; whatever reaches it before the query is sent cannot be the
// answer, even with the right ID and question.
func TestForwardDropsEarlyDatagrams(t *testing.T) {
	saved := newID
	t.Cleanup(func() { newID = saved }) // after the proxy's Close
	newID = func() uint16 { return 99 } // known to the forger
	var armed atomic.Bool
	var proxy atomic.Pointer[Proxy]
	up := startRawUpstream(t, func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort) {
		if armed.CompareAndSwap(true, false) {
			// This query is answered only once a forged answer to the
			// next sits queued at every socket opened ahead of it.
			for _, port := range proxy.Load().pools[0].readyPorts(t) {
				f := answerA(q, 300, "10.6.6.6")
				f.Id = 99
				u.send(t, nil, f, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
			}
		}
		u.send(t, nil, answerA(q, 0, "10.1.1.1"), from)
	})
	p := startProxyTo(t, up.addr, newFakeSink(), "svc.test")
	proxy.Store(p)
	// Fill the pool first: a query, then its sockets are opened.
	askProxy(t, p, "svc.test.", 1)
	waitPooled(t, p.pools[0])
	armed.Store(true)
	for range 2 * poolSize {
		r := askProxy(t, p, "svc.test.", 2)
		if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "10.1.1.1" {
			t.Fatalf("answer %v, want the upstream's 10.1.1.1, not the early 10.6.6.6", r.Answer)
		}
	}
	if armed.Load() {
		t.Fatal("no query reached the upstream")
	}
}

func waitPooled(t *testing.T, u *upstreamPool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); u.pooledSize() < poolSize; {
		if time.Now().After(deadline) {
			t.Fatalf("%d sockets pooled, want %d", u.pooledSize(), poolSize)
		}
		time.Sleep(time.Millisecond)
	}
}

func (u *upstreamPool) readyPorts(t *testing.T) []uint16 {
	u.mu.Lock()
	defer u.mu.Unlock()
	var ports []uint16
	for _, f := range u.ready {
		rc, err := f.SyscallConn() // not Fd(), which makes the file blocking
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Control(func(fd uintptr) {
			sa, err := unix.Getsockname(int(fd))
			if err != nil {
				t.Error(err)
				return
			}
			ports = append(ports, uint16(sa.(*unix.SockaddrInet4).Port))
		})
	}
	return ports
}

// TestPoolClosesWhenIdle: a proxy nobody asks holds no upstream socket
// for longer than poolIdle (the agent runs one proxy per sandbox).
func TestPoolClosesWhenIdle(t *testing.T) {
	saved := poolIdle
	t.Cleanup(func() { poolIdle = saved }) // after the proxy's Close
	poolIdle = 50 * time.Millisecond
	up := startRawUpstream(t, func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort) {
		u.send(t, nil, answerA(q, 0, "10.1.1.1"), from)
	})
	p := startProxyTo(t, up.addr, newFakeSink(), "svc.test")
	askProxy(t, p, "svc.test.", 1)
	waitPooled(t, p.pools[0])
	for deadline := time.Now().Add(5 * time.Second); p.pools[0].pooledSize() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d sockets still open after the pool went idle", p.pools[0].pooledSize())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := askProxy(t, p, "svc.test.", 2); len(r.Answer) != 1 {
		t.Fatalf("after the pool closed: %v", r)
	}
}

// TestForwardTruncatedRetriesOverTCP: a truncated UDP answer is asked
// again over TCP, so that the client gets, and the allow map holds, every
// address.
func TestForwardTruncatedRetriesOverTCP(t *testing.T) {
	up := startRawUpstream(t, func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort) {
		r := answerA(q, 300, "10.1.1.1")
		r.Truncated = true
		u.send(t, nil, r, from)
	})
	l, err := net.Listen("tcp4", up.addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &mdns.Server{Listener: l, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		r := answerA(q, 300, "10.1.1.1")
		r.Answer = append(r.Answer, answerA(q, 300, "10.1.1.2").Answer...)
		_ = w.WriteMsg(r)
	})}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.Shutdown() })
	sink := newFakeSink()
	p := startProxyTo(t, up.addr, sink, "svc.test")
	r := askProxy(t, p, "svc.test.", 3)
	if len(r.Answer) != 2 || r.Truncated {
		t.Fatalf("answer %v, want both addresses from the TCP retry", r)
	}
	for _, a := range []string{"10.1.1.1", "10.1.1.2"} {
		if !sink.has(ruleOfAllow(t, "svc.test"), a) {
			t.Errorf("%s not in the allow map", a)
		}
	}
	if n := len(up.queries()); n != 1 {
		t.Errorf("upstream saw %d UDP queries, want 1", n)
	}
}

// ruleOfAllow is the rule id startProxyTo's policy gives its one allowed
// pattern.
func ruleOfAllow(t *testing.T, raw string) policy.RuleID {
	t.Helper()
	return ruleOf(t, compile(t, raw), raw)
}
