package dns

import (
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// The proxy keeps the upstream's answers for as long as their TTLs say, so
// that a name asked again (a build resolves its registry once per
// download; glibc caches nothing) is answered without a second exchange
// with the upstream: that exchange was half of a proxied query's cost
// (issue #15). Nothing else changes: the name is matched against the policy
// before the cache is looked at, and an answer from the cache goes through
// learn like a fresh one, so every address handed out is in the allow map
// for at least its remaining TTL (re-added if it had expired there).

// cacheMax bounds the answers one proxy keeps; when full, expired ones are
// dropped, and if none is, all of them.
const cacheMax = 512

// cacheKey is what an answer depends on besides the name: the question
// exactly as asked (case included, for clients that randomise it), the
// header flags an upstream acts on, EDNS (size and DO) and the transport.
type cacheKey struct {
	name          string
	qtype, qclass uint16
	rd, cd        bool
	edns, do      bool
	udpSize       uint16
	tcp           bool
}

type cached struct {
	resp   *mdns.Msg // as the upstream sent it, before capTTLs
	stored time.Time
	ttl    uint32 // the smallest TTL in it, in seconds
}

type answerCache struct {
	mu sync.Mutex
	m  map[cacheKey]*cached
}

// keyOf returns the cache key of req, or false when its answer is not
// cached: EDNS options (cookies, client subnet) make the answer the
// client's own.
func keyOf(req *mdns.Msg, tcp bool) (cacheKey, bool) {
	q := req.Question[0]
	k := cacheKey{name: q.Name, qtype: q.Qtype, qclass: q.Qclass, rd: req.RecursionDesired, cd: req.CheckingDisabled, tcp: tcp}
	if opt := req.IsEdns0(); opt != nil {
		if len(opt.Option) > 0 {
			return cacheKey{}, false
		}
		k.edns, k.do, k.udpSize = true, opt.Do(), opt.UDPSize()
	}
	return k, true
}

// minTTL is the smallest TTL of resp's records, and whether resp may be
// kept at all: a complete, positive answer.
func minTTL(resp *mdns.Msg) (uint32, bool) {
	if resp.Rcode != mdns.RcodeSuccess || resp.Truncated || len(resp.Answer) == 0 {
		return 0, false
	}
	ttl := ^uint32(0)
	for _, sec := range [][]mdns.RR{resp.Answer, resp.Ns, resp.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != mdns.TypeOPT {
				ttl = min(ttl, h.Ttl)
			}
		}
	}
	return ttl, ttl > 0
}

// put keeps a copy of resp, received at now.
func (c *answerCache) put(k cacheKey, resp *mdns.Msg, now time.Time) {
	ttl, ok := minTTL(resp)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[cacheKey]*cached{}
	}
	if len(c.m) >= cacheMax {
		for k, e := range c.m {
			if !e.fresh(now) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= cacheMax {
			clear(c.m)
		}
	}
	c.m[k] = &cached{resp: resp.Copy(), stored: now, ttl: ttl}
}

// get returns a copy of the answer kept for k with its TTLs lowered by
// the time it has been kept (rounded up to whole seconds), or nil when
// there is none or its smallest TTL has run out.
func (c *answerCache) get(k cacheKey, now time.Time) *mdns.Msg {
	c.mu.Lock()
	e := c.m[k]
	if e != nil && !e.fresh(now) {
		delete(c.m, k)
		e = nil
	}
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	age := e.age(now)
	resp := e.resp.Copy()
	for _, sec := range [][]mdns.RR{resp.Answer, resp.Ns, resp.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != mdns.TypeOPT {
				h.Ttl -= age // age < e.ttl <= h.Ttl
			}
		}
	}
	return resp
}

// age is how long e has been kept, in seconds rounded up.
func (e *cached) age(now time.Time) uint32 {
	d := now.Sub(e.stored)
	if d < 0 {
		return 0
	}
	return uint32((d + time.Second - 1) / time.Second)
}

// fresh reports whether every record of e still has a TTL of a second or
// more at now.
func (e *cached) fresh(now time.Time) bool { return e.age(now) < e.ttl }
