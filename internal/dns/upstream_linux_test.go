package dns

import (
	"maps"
	"net/netip"
	"syscall"
	"testing"

	mdns "github.com/miekg/dns"
)

// TestForwardReusesSocketAtFreshPort: a socket that carried a query goes
// back to the pool at a fresh port (newPort) instead of being closed and
// replaced, which cost a forwarded query most of its time on top of a bare
// relay (issue #15; BenchmarkRelayFloor); the ports stay fresh per query.
func TestForwardReusesSocketAtFreshPort(t *testing.T) {
	up := startRawUpstream(t, func(u *rawUpstream, q *mdns.Msg, from netip.AddrPort) {
		u.send(t, nil, answerA(q, 0, "10.1.1.1"), from) // TTL 0: never cached
	})
	p := startProxyTo(t, up.addr, newFakeSink(), "once.test")
	askProxy(t, p, "once.test.", 1)
	waitPooled(t, p.pools[0])
	before := p.pools[0].readyInodes(t)
	const n = 2 * poolSize
	for range n {
		if r := askProxy(t, p, "once.test.", 2); len(r.Answer) != 1 {
			t.Fatalf("answer: %v", r)
		}
		// The used socket goes back after the answer, off the client's
		// time: a query asked before that finds the pool short and opens
		// a socket, and the pool then closes one as surplus (seen under
		// -race), which is not what this test is about.
		waitPooled(t, p.pools[0])
	}
	if after := p.pools[0].readyInodes(t); !maps.Equal(after, before) {
		t.Errorf("pooled sockets %v before %d queries, %v after: used sockets were closed, not reused", before, n, after)
	}
	ports := map[uint16]bool{}
	for _, q := range up.queries() {
		ports[q.from.Port()] = true
	}
	if len(ports) < n+1-2 { // a random port repeats now and then
		t.Errorf("%d queries left from %d ports", n+1, len(ports))
	}
}

func (u *upstreamPool) readyInodes(t *testing.T) map[uint64]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	inodes := map[uint64]bool{}
	for _, f := range u.ready {
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		inodes[st.Sys().(*syscall.Stat_t).Ino] = true
	}
	return inodes
}
