package testutil

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"
)

// FakeDNS is a fake upstream resolver on the host's loopback whose answers
// the test changes while it runs.
type FakeDNS struct {
	// Addr is the host:port it serves UDP and TCP on (127.0.0.1).
	Addr string

	mu      sync.Mutex
	records map[string][]mdns.RR // lower-case fqdn -> records, parsed by Set
	queries int
}

// StartFakeDNS serves UDP and TCP on 127.0.0.1 at one port until the test
// ends. It answers a question with the records Set gave its name: those of
// the asked type, CNAMEs, and records of other owners (so that a test can
// check the client ignores them).
func StartFakeDNS(t testing.TB) *FakeDNS {
	t.Helper()
	u := &FakeDNS{records: map[string][]mdns.RR{}}
	var pc net.PacketConn
	var l net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port for the fake upstream")
	}
	u.Addr = pc.LocalAddr().String()
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg).SetReply(req)
		u.mu.Lock()
		u.queries++
		q := req.Question[0]
		qname := mdns.Fqdn(strings.ToLower(q.Name))
		// Records are parsed once, by Set: parsing them per query made
		// the fake slower than a resolver's cache, the baseline of the
		// proxy's benchmark.
		for _, rr := range u.records[qname] {
			if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == mdns.TypeCNAME || rr.Header().Name != qname {
				m.Answer = append(m.Answer, mdns.Copy(rr))
			}
		}
		u.mu.Unlock()
		_ = w.WriteMsg(m)
	})
	for _, s := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return u
}

// Set replaces the records (zone-file lines, "name. 300 IN A 10.0.0.1")
// served for name. It panics on a line that does not parse.
func (u *FakeDNS) Set(name string, rrs ...string) {
	parsed := make([]mdns.RR, 0, len(rrs))
	for _, s := range rrs {
		rr, err := mdns.NewRR(s)
		if err != nil {
			panic(fmt.Sprintf("fake DNS record %q: %v", s, err))
		}
		parsed = append(parsed, rr)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.records[mdns.Fqdn(strings.ToLower(name))] = parsed
}

// Queries is how many queries it has answered.
func (u *FakeDNS) Queries() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.queries
}
