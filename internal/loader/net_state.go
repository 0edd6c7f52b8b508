//go:build linux

package loader

import (
	"fmt"
	"net/netip"

	"github.com/aigate-dev/aigate/internal/policy"
)

// netEntry is one trie entry: a prefix for one port (0: any) in the allow
// or the deny trie of a policy.
type netEntry struct {
	prefix netip.Prefix // masked; IPv4 never in the 4-in-6 form
	port   uint16
	deny   bool
}

func (e netEntry) String() string {
	kind := "allow"
	if e.deny {
		kind = "deny"
	}
	if e.port == 0 {
		return fmt.Sprintf("%s %s", kind, e.prefix)
	}
	return fmt.Sprintf("%s %s port %d", kind, e.prefix, e.port)
}

// netClaim is a reason for an entry to exist: a rule, and whether the
// address was resolved for a domain rule (UpdateAddrs only touches those).
type netClaim struct {
	rule   policy.RuleID
	domain bool
}

// netState is what the loader wrote for one policy: each entry with the
// claims that keep it. The trie value is the lowest claiming rule, so the
// reported rule does not depend on the order the claims arrived in.
type netState struct {
	entries map[netEntry]map[netClaim]struct{}
}

func newNetState() *netState {
	return &netState{entries: map[netEntry]map[netClaim]struct{}{}}
}

func (s *netState) clone() *netState {
	c := newNetState()
	for e, claims := range s.entries {
		m := make(map[netClaim]struct{}, len(claims))
		for k := range claims {
			m[k] = struct{}{}
		}
		c.entries[e] = m
	}
	return c
}

// normalize turns a v4-mapped prefix into the IPv4 prefix it covers: the
// programs match v4-mapped destinations as IPv4 addresses, so an entry in
// the 4-in-6 form would never match. A mapped prefix shorter than /96 is
// left alone (it covers IPv6 addresses too, and no IPv4 destination).
func normalize(e netEntry) netEntry {
	a := e.prefix.Addr()
	if a.Is4In6() && e.prefix.Bits() >= 96 {
		e.prefix = netip.PrefixFrom(a.Unmap(), e.prefix.Bits()-96)
	}
	e.prefix = e.prefix.Masked()
	return e
}

func (s *netState) claim(e netEntry, c netClaim) {
	e = normalize(e)
	if !e.prefix.IsValid() {
		return
	}
	m := s.entries[e]
	if m == nil {
		m = map[netClaim]struct{}{}
		s.entries[e] = m
	}
	m[c] = struct{}{}
}

func (s *netState) release(e netEntry, c netClaim) {
	e = normalize(e)
	m := s.entries[e]
	delete(m, c)
	if len(m) == 0 {
		delete(s.entries, e)
	}
}

func minRule(claims map[netClaim]struct{}) policy.RuleID {
	var r policy.RuleID
	first := true
	for c := range claims {
		if first || c.rule < r {
			r, first = c.rule, false
		}
	}
	return r
}
