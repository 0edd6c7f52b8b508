package dns

import (
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestCacheAnswersWithinTTL: a name asked again within its TTL is answered
// without the upstream, with the TTL lowered by the time it was kept, and
// its addresses are learned again: one that had expired from the allow map
// meanwhile (after min_ttl) is put back before the answer goes out.
func TestCacheAnswersWithinTTL(t *testing.T) {
	h := newHarness(t, policy.DNS{MinTTL: 30 * time.Second, MaxTTL: 120 * time.Second}, "c.test")
	h.up.Set("c.test", "c.test. 60 IN A 10.0.3.1")
	rule := ruleOf(t, h.c, "c.test")
	h.query(t, "udp", "", "c.test", mdns.TypeA)
	r := h.query(t, "udp", "", "c.test", mdns.TypeA)
	if n := h.up.Queries(); n != 1 {
		t.Fatalf("upstream asked %d times, want once", n)
	}
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl > 59 {
		t.Fatalf("cached answer %v: want the record with its TTL lowered", r.Answer)
	}
	if st := h.p.Stats(); st.Cached != 1 || st.Forwarded != 2 {
		t.Errorf("stats %+v, want 2 answered, 1 of them from the cache", st)
	}
	h.p.expire(time.Now().Add(121 * time.Second))
	if h.sink.has(rule, "10.0.3.1") {
		t.Fatal("the address outlived max_ttl in the allow map")
	}
	h.query(t, "udp", "", "c.test", mdns.TypeA)
	if !h.sink.has(rule, "10.0.3.1") {
		t.Fatal("answered from the cache an address the allow map no longer holds")
	}
	// Over TCP and for AAAA the answer is another one.
	h.query(t, "tcp", "", "c.test", mdns.TypeA)
	h.query(t, "udp", "", "c.test", mdns.TypeAAAA)
	if n := h.up.Queries(); n != 3 {
		t.Fatalf("upstream asked %d times, want 3 (A over UDP, A over TCP, AAAA)", n)
	}
}

// TestCacheExpires: once the smallest TTL of an answer has run out (in
// whole seconds, rounded up), the upstream is asked again; an answer with
// a TTL of 0, or to a query with EDNS options, is not kept.
func TestCacheExpires(t *testing.T) {
	h := newHarness(t, policy.DNS{}, "d.test", "z.test")
	h.up.Set("d.test", "d.test. 2 IN A 10.0.4.1")
	h.query(t, "udp", "", "d.test", mdns.TypeA)
	h.up.Set("d.test", "d.test. 2 IN A 10.0.4.2")
	if r := h.query(t, "udp", "", "d.test", mdns.TypeA); r.Answer[0].(*mdns.A).A.String() != "10.0.4.1" {
		t.Fatalf("within the TTL: %v, want the cached 10.0.4.1", r.Answer)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := h.query(t, "udp", "", "d.test", mdns.TypeA); r.Answer[0].(*mdns.A).A.String() != "10.0.4.2" {
		t.Fatalf("after the TTL: %v, want the upstream's new 10.0.4.2", r.Answer)
	}
	h.up.Set("z.test", "z.test. 0 IN A 10.0.5.1")
	before := h.up.Queries()
	h.query(t, "udp", "", "z.test", mdns.TypeA)
	h.query(t, "udp", "", "z.test", mdns.TypeA)
	if n := h.up.Queries() - before; n != 2 {
		t.Fatalf("TTL 0: upstream asked %d times, want 2", n)
	}
	h.up.Set("d.test", "d.test. 300 IN A 10.0.4.3")
	before = h.up.Queries()
	for range 2 {
		m := new(mdns.Msg).SetQuestion("d.test.", mdns.TypeA)
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"})
		c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
		if _, _, err := c.Exchange(m, h.proxyAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.up.Queries() - before; n != 2 {
		t.Fatalf("EDNS options: upstream asked %d times, want 2", n)
	}
}
