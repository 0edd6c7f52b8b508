package dns

import (
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// learned is one address an answer gave for the queried name, with the TTL
// the proxy keeps it for.
type learned struct {
	addr netip.Addr
	ttl  time.Duration
}

// chainAddrs returns the A and AAAA records of resp that belong to qname:
// its own, and those of the names its CNAME chain leads to within the
// answer. Records for unrelated owners (an upstream may add them) are
// ignored, so they can never widen the allow map.
func chainAddrs(resp *mdns.Msg, qname string) []learned {
	names := map[string]bool{canonical(qname): true}
	// A chain is at most as long as the answer; each pass adds one link.
	for range resp.Answer {
		grew := false
		for _, rr := range resp.Answer {
			c, ok := rr.(*mdns.CNAME)
			if ok && names[canonical(c.Hdr.Name)] && !names[canonical(c.Target)] {
				names[canonical(c.Target)] = true
				grew = true
			}
		}
		if !grew {
			break
		}
	}
	var out []learned
	for _, rr := range resp.Answer {
		h := rr.Header()
		if !names[canonical(h.Name)] {
			continue
		}
		ttl := time.Duration(h.Ttl) * time.Second
		switch rr := rr.(type) {
		case *mdns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				out = append(out, learned{a, ttl})
			}
		case *mdns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok {
				out = append(out, learned{a.Unmap(), ttl})
			}
		}
	}
	return out
}

// clamp bounds ttl to [lo, hi].
func clamp(ttl, lo, hi time.Duration) time.Duration {
	return min(max(ttl, lo), hi)
}

// capTTLs lowers every record TTL of resp to hi, so that a client does not
// cache an address longer than the proxy keeps it allowed.
func capTTLs(resp *mdns.Msg, hi time.Duration) {
	limit := uint32(hi / time.Second)
	for _, sec := range [][]mdns.RR{resp.Answer, resp.Ns, resp.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != mdns.TypeOPT && h.Ttl > limit {
				h.Ttl = limit
			}
		}
	}
}
