package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// fakeSink records the allow map the proxy maintains, as loader.Net would.
type fakeSink struct {
	mu    sync.Mutex
	addrs map[policy.RuleID]map[netip.Addr]bool
	inUse map[netip.Addr]bool
	calls int
}

func newFakeSink() *fakeSink {
	return &fakeSink{addrs: map[policy.RuleID]map[netip.Addr]bool{}, inUse: map[netip.Addr]bool{}}
}

func (s *fakeSink) UpdateAddrs(_ uint32, d policy.DomainEntry, add, remove []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	m := s.addrs[d.Rule]
	if m == nil {
		m = map[netip.Addr]bool{}
		s.addrs[d.Rule] = m
	}
	for _, a := range add {
		m[a] = true
	}
	for _, a := range remove {
		delete(m, a)
	}
	return nil
}

func (s *fakeSink) AddrInUse(_ uint32, a netip.Addr) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse[a], nil
}

func (s *fakeSink) has(rule policy.RuleID, a string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[rule][netip.MustParseAddr(a)]
}

func compile(t testing.TB, allow ...string) *policy.Compiled {
	t.Helper()
	p := &policy.Policy{Net: policy.NetDeny, Loopback: policy.LoopbackAll}
	for _, a := range allow {
		p.AllowNet = append(p.AllowNet, policy.Endpoint{Raw: a})
	}
	c, err := policy.Compile(p, policy.Env{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ruleOf(t testing.TB, c *policy.Compiled, raw string) policy.RuleID {
	t.Helper()
	for _, r := range c.Rules {
		if r.Pattern == raw {
			return r.ID
		}
	}
	t.Fatalf("no rule %q", raw)
	return 0
}

type harness struct {
	p    *Proxy
	sink *fakeSink
	up   *testutil.FakeDNS
	c    *policy.Compiled
	evs  chan events.Event
}

func newHarness(t *testing.T, ttl policy.DNS, allow ...string) *harness {
	t.Helper()
	h := &harness{sink: newFakeSink(), up: testutil.StartFakeDNS(t), c: compile(t, allow...), evs: make(chan events.Event, 16)}
	p, err := Start(Config{
		PolicyID: 1, Net: h.c.Net, TTL: ttl, Sink: h.sink, Upstreams: []string{h.up.Addr},
		Report: func(ev events.Event) { h.evs <- ev }, CgroupID: 77,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	h.p = p
	return h
}

func (h *harness) proxyAddr() string {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), h.p.Port()).String()
}

func (h *harness) query(t *testing.T, network, server, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg).SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	if server == "" {
		server = h.proxyAddr()
	}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s over %s: %v", name, network, err)
	}
	return r
}

func TestAllowedAndRefused(t *testing.T) {
	h := newHarness(t, policy.DNS{}, "api.example.test", "*.cdn.test:443")
	h.up.Set("api.example.test", "api.example.test. 300 IN A 10.0.0.1", "api.example.test. 300 IN AAAA 2001:db8::1")
	h.up.Set("x.cdn.test", "x.cdn.test. 300 IN A 10.0.0.2")
	h.up.Set("cdn.test", "cdn.test. 300 IN A 10.0.0.3")
	h.up.Set("exfil.attacker.test", "exfil.attacker.test. 300 IN A 10.6.6.6")

	r := h.query(t, "udp", "", "API.example.test", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("allowed name: %v", r)
	}
	api := ruleOf(t, h.c, "api.example.test")
	if !h.sink.has(api, "10.0.0.1") {
		t.Error("answer address not in the allow map")
	}
	r = h.query(t, "tcp", netip.AddrPortFrom(netip.IPv6Loopback(), h.p.Port()).String(), "api.example.test", mdns.TypeAAAA)
	if r.Rcode != mdns.RcodeSuccess || !h.sink.has(api, "2001:db8::1") {
		t.Fatalf("AAAA over TCP on ::1: %v", r)
	}
	r = h.query(t, "udp", "", "x.cdn.test", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess || !h.sink.has(ruleOf(t, h.c, "*.cdn.test:443"), "10.0.0.2") {
		t.Fatalf("wildcard: %v", r)
	}
	if h.p.DomainOf(netip.MustParseAddr("10.0.0.2")) != "x.cdn.test" {
		t.Errorf("DomainOf: %q", h.p.DomainOf(netip.MustParseAddr("10.0.0.2")))
	}
	calls := h.sink.calls
	for _, name := range []string{"exfil.attacker.test", "cdn.test", "api.example.test.evil.test"} {
		r = h.query(t, "udp", "", name, mdns.TypeA)
		if r.Rcode != mdns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("%s: rcode %d, want REFUSED", name, r.Rcode)
		}
		select {
		case ev := <-h.evs:
			if ev.Kind != events.KindNet || ev.Op != events.OpDNS || ev.Domain != name || ev.Rule != uint32(h.c.Net.DenyRule) || ev.CgroupID != 77 {
				t.Errorf("event %+v", ev)
			}
		case <-time.After(time.Second):
			t.Errorf("%s: no event", name)
		}
	}
	if h.sink.calls != calls {
		t.Error("a refused name reached the allow map")
	}
	if q := h.up.Queries(); q != 3 {
		t.Errorf("upstream saw %d queries, want the 3 allowed ones", q)
	}
}

func TestCNAMEChain(t *testing.T) {
	h := newHarness(t, policy.DNS{}, "www.allowed.test")
	h.up.Set("www.allowed.test",
		"www.allowed.test. 300 IN CNAME edge.cdn.test.",
		"edge.cdn.test. 300 IN CNAME e1.cdn.test.",
		"e1.cdn.test. 300 IN A 10.0.0.7",
		"unrelated.evil.test. 300 IN A 10.6.6.6")
	r := h.query(t, "udp", "", "www.allowed.test", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess {
		t.Fatal(r)
	}
	rule := ruleOf(t, h.c, "www.allowed.test")
	if !h.sink.has(rule, "10.0.0.7") {
		t.Error("the chain's address is not allowed")
	}
	if h.sink.has(rule, "10.6.6.6") {
		t.Error("an unrelated record in the answer was allowed")
	}
}

// TestTTL covers the floor, the ceiling (in the map and in the answer the
// client caches), a changing answer and an address kept while in use.
func TestTTL(t *testing.T) {
	h := newHarness(t, policy.DNS{MinTTL: 30 * time.Second, MaxTTL: 120 * time.Second}, "a.test", "b.test")
	h.up.Set("a.test", "a.test. 5 IN A 10.0.1.1")
	h.up.Set("b.test", "b.test. 86400 IN A 10.0.2.1")
	ra, rb := ruleOf(t, h.c, "a.test"), ruleOf(t, h.c, "b.test")
	h.query(t, "udp", "", "a.test", mdns.TypeA)
	r := h.query(t, "udp", "", "b.test", mdns.TypeA)
	if got := r.Answer[0].Header().Ttl; got != 120 {
		t.Errorf("answer TTL %d, want the 120s ceiling", got)
	}
	now := time.Now()
	h.p.expire(now.Add(10 * time.Second)) // past the record's 5s, before the 30s floor
	if !h.sink.has(ra, "10.0.1.1") {
		t.Error("expired before the TTL floor")
	}
	h.p.expire(now.Add(31 * time.Second))
	if h.sink.has(ra, "10.0.1.1") {
		t.Error("kept past the TTL floor")
	}
	if !h.sink.has(rb, "10.0.2.1") {
		t.Error("expired before the ceiling")
	}
	h.p.expire(now.Add(121 * time.Second))
	if h.sink.has(rb, "10.0.2.1") {
		t.Error("kept past the TTL ceiling")
	}

	// The answer changes: both addresses are allowed while valid. (The
	// proxy's cache would answer from the first one for its 5 s: drop
	// it, as if they had passed.)
	h.p.cache.mu.Lock()
	clear(h.p.cache.m)
	h.p.cache.mu.Unlock()
	h.up.Set("a.test", "a.test. 5 IN A 10.0.1.1")
	h.query(t, "udp", "", "a.test", mdns.TypeA)
	h.up.Set("a.test", "a.test. 60 IN A 10.0.1.2")
	h.p.cache.mu.Lock()
	clear(h.p.cache.m)
	h.p.cache.mu.Unlock()
	now = time.Now()
	h.query(t, "udp", "", "a.test", mdns.TypeA)
	if !h.sink.has(ra, "10.0.1.1") || !h.sink.has(ra, "10.0.1.2") {
		t.Fatal("both answers must be allowed while valid")
	}
	// The old one is in use by a live connection: kept past its expiry.
	h.sink.mu.Lock()
	h.sink.inUse[netip.MustParseAddr("10.0.1.1")] = true
	h.sink.mu.Unlock()
	h.p.expire(now.Add(31 * time.Second))
	if !h.sink.has(ra, "10.0.1.1") {
		t.Error("an address in use was expired")
	}
	h.sink.mu.Lock()
	h.sink.inUse[netip.MustParseAddr("10.0.1.1")] = false
	h.sink.mu.Unlock()
	h.p.expire(now.Add(40 * time.Second))
	if h.sink.has(ra, "10.0.1.1") || !h.sink.has(ra, "10.0.1.2") {
		t.Error("after the old answer expired, only the new one must stay")
	}
	if st := h.p.Stats(); st.Learned != 1 || st.Refused != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestCloseRemovesAddresses(t *testing.T) {
	sink, up, c := newFakeSink(), testutil.StartFakeDNS(t), compile(t, "a.test")
	up.Set("a.test", "a.test. 300 IN A 10.0.1.1")
	p, err := Start(Config{PolicyID: 1, Net: c.Net, Sink: sink, Upstreams: []string{up.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{p: p}
	h.query(t, "udp", "", "a.test", mdns.TypeA)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc([]string{"10.0.1.1"}, func(a string) bool { return sink.has(ruleOf(t, c, "a.test"), a) }) {
		t.Error("Close left an address allowed")
	}
}

func TestSystemUpstreams(t *testing.T) {
	f := t.TempDir() + "/resolv.conf"
	if err := writeFile(f, "nameserver 127.0.0.53\nnameserver ::1\noptions edns0\n"); err != nil {
		t.Fatal(err)
	}
	got, err := SystemUpstreams(f)
	if err != nil || !slices.Equal(got, []string{"127.0.0.53:53", "[::1]:53"}) {
		t.Fatalf("%q, %v", got, err)
	}
	if err := writeFile(f, "search example\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := SystemUpstreams(f); err == nil {
		t.Fatal("no error for a resolv.conf without nameservers")
	}
}

// localhost is answered by the proxy itself (RFC 6761), without an event
// or a refusal and without asking upstream: issue 11's "blocked dns
// localhost" was noise for a name that can only mean loopback.
func TestLocalhostAnsweredWithoutEvent(t *testing.T) {
	h := newHarness(t, policy.DNS{})
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"localhost", mdns.TypeA, "127.0.0.1"},
		{"LOCALHOST.", mdns.TypeAAAA, "::1"},
		{"app.localhost", mdns.TypeA, "127.0.0.1"},
		{"localhost", mdns.TypeMX, ""},
	} {
		r := h.query(t, "udp", "", tc.name, tc.qtype)
		if r.Rcode != mdns.RcodeSuccess {
			t.Errorf("%s: rcode %d, want NOERROR", tc.name, r.Rcode)
			continue
		}
		var got string
		for _, rr := range r.Answer {
			switch a := rr.(type) {
			case *mdns.A:
				got = a.A.String()
			case *mdns.AAAA:
				got = a.AAAA.String()
			}
		}
		if got != tc.want {
			t.Errorf("%s type %d: answer %q, want %q", tc.name, tc.qtype, got, tc.want)
		}
	}
	select {
	case ev := <-h.evs:
		t.Errorf("an event for localhost: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
	// Names that only look like it are still refused.
	if r := h.query(t, "udp", "", "localhost.attacker.test", mdns.TypeA); r.Rcode != mdns.RcodeRefused {
		t.Errorf("localhost.attacker.test: rcode %d, want REFUSED", r.Rcode)
	}
	if q := h.up.Queries(); q != 0 {
		t.Errorf("upstream saw %d queries, want none", q)
	}
}

// TestExpiryNotWokenPerAnswer: learning into a table that already holds
// addresses leaves the expiry loop to its ticks; waking it on every
// answer cost a thread wake-up per query.
func TestExpiryNotWokenPerAnswer(t *testing.T) {
	h := newHarness(t, policy.DNS{}, "*.a.test")
	for i := range 10 {
		name := fmt.Sprintf("h%d.a.test", i)
		h.up.Set(name, fmt.Sprintf("%s. 300 IN A 10.0.2.%d", name, i+1))
		if r := h.query(t, "udp", "", name, mdns.TypeA); len(r.Answer) != 1 {
			t.Fatalf("%s: %v", name, r)
		}
	}
	if w := h.p.wakes.Load(); w != 1 {
		t.Errorf("10 answers woke the expiry loop %d times, want once (the first, into an empty table)", w)
	}
}

// TestExpiryWakesFromIdle: with nothing to expire the expiry loop sleeps
// without a timer; an answer learned wakes it, and the address is removed
// once its TTL is over, again after the loop went back to sleep.
func TestExpiryWakesFromIdle(t *testing.T) {
	h := newHarness(t, policy.DNS{MinTTL: time.Second, MaxTTL: time.Second}, "a.test")
	h.up.Set("a.test", "a.test. 1 IN A 10.0.1.1")
	ra := ruleOf(t, h.c, "a.test")
	for round := range 2 {
		h.query(t, "udp", "", "a.test", mdns.TypeA)
		if !h.sink.has(ra, "10.0.1.1") {
			t.Fatalf("round %d: the answer was not allowed", round)
		}
		deadline := time.Now().Add(10 * time.Second)
		for h.sink.has(ra, "10.0.1.1") {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the address was kept 10 s past its 1 s TTL", round)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for !h.p.empty() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the table did not empty", round)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
