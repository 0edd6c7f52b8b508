//go:build linux

package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
)

// netClaim is a reason for an entry to exist: a rule, and whether the
// address was resolved for a domain rule (UpdateAddrs only touches those).
type netClaim struct {
	rule   policy.RuleID
	domain bool
}

// netState is what was written for one policy: each entry with the claims
// that keep it. The trie value is the lowest claiming rule, so the
// reported rule does not depend on the order the claims arrived in.
type netState struct {
	entries map[loader.NetEntry]map[netClaim]struct{}
}

func newNetState() *netState {
	return &netState{entries: map[loader.NetEntry]map[netClaim]struct{}{}}
}

// adoptedState is the state of entries found pinned: each claimed by the
// rule the trie reports, none as a domain's.
func adoptedState(entries map[loader.NetEntry]policy.RuleID) *netState {
	s := newNetState()
	for e, rule := range entries {
		s.claim(e, netClaim{rule: rule})
	}
	return s
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
func normalize(e loader.NetEntry) loader.NetEntry {
	a := e.Prefix.Addr()
	if a.Is4In6() && e.Prefix.Bits() >= 96 {
		e.Prefix = netip.PrefixFrom(a.Unmap(), e.Prefix.Bits()-96)
	}
	e.Prefix = e.Prefix.Masked()
	return e
}

func (s *netState) claim(e loader.NetEntry, c netClaim) {
	e = normalize(e)
	if !e.Prefix.IsValid() {
		return
	}
	m := s.entries[e]
	if m == nil {
		m = map[netClaim]struct{}{}
		s.entries[e] = m
	}
	m[c] = struct{}{}
}

func (s *netState) release(e loader.NetEntry, c netClaim) {
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

// setPolicy writes s's egress policy np: its settings, denied and allowed
// prefixes, the addresses resolved for its allowed domains (resolved maps
// a DomainEntry.Name to its addresses; see ResolveDomains) and its
// allow_unix entries. Calling it again replaces the policy, including any
// addresses added since with updateAddrs.
func (e *Egress) setPolicy(s *sandbox, np policy.NetPolicy, resolved map[string][]netip.Addr) error {
	id := s.sb.ID
	want := newNetState()
	for _, d := range np.Deny {
		want.claim(loader.NetEntry{Prefix: d.Prefix, Port: d.Port, Deny: true}, netClaim{rule: d.Rule})
	}
	for _, a := range np.Allow {
		want.claim(loader.NetEntry{Prefix: a.Prefix, Port: a.Port}, netClaim{rule: a.Rule})
	}
	for _, d := range np.Domains {
		for _, a := range resolved[d.Name] {
			want.claim(loader.NetEntry{Prefix: netip.PrefixFrom(a, a.BitLen()), Port: d.Port}, netClaim{rule: d.Rule, domain: true})
		}
	}

	w := &s.w
	w.rmu.Lock()
	defer w.rmu.Unlock()
	have := w.rules
	if have == nil {
		have = newNetState()
	}
	// New entries first, then the settings that may start relying on them,
	// then the stale entries: no moment allows less than both old and new
	// policies agree on. Before the first settings are written the programs
	// refuse everything (fail closed).
	if err := e.sync(id, have, want, false); err != nil {
		w.rules = have
		return fmt.Errorf("set network policy %d: %w", id, err)
	}
	if err := e.net.WriteSettings(id, np); err != nil {
		w.rules = have
		return err
	}
	if err := e.sync(id, have, want, true); err != nil {
		w.rules = have
		return fmt.Errorf("set network policy %d: %w", id, err)
	}
	w.rules = want
	unix, err := e.net.WriteUnixAllow(id, w.unix, np.Unix)
	w.unix = unix
	if err != nil {
		return fmt.Errorf("set network policy %d: %w", id, err)
	}
	return nil
}

// updateAddrs adds and removes addresses resolved for one allowed domain
// of s's policy (its DNS proxy calls it as answers arrive and expire).
// Claims are sets: adding an address twice for the same domain rule and
// removing it once removes it. An address stays allowed while another rule
// still allows it.
func (e *Egress) updateAddrs(s *sandbox, d policy.DomainEntry, add, remove []netip.Addr) error {
	s.w.rmu.Lock()
	defer s.w.rmu.Unlock()
	have := s.w.rules
	if have == nil {
		return fmt.Errorf("update addresses of %s: policy %d has no network policy", d.Name, s.sb.ID)
	}
	want := have.clone()
	c := netClaim{rule: d.Rule, domain: true}
	for _, a := range add {
		want.claim(loader.NetEntry{Prefix: netip.PrefixFrom(a, a.BitLen()), Port: d.Port}, c)
	}
	for _, a := range remove {
		want.release(loader.NetEntry{Prefix: netip.PrefixFrom(a, a.BitLen()), Port: d.Port}, c)
	}
	err := errors.Join(e.sync(s.sb.ID, have, want, false), e.sync(s.sb.ID, have, want, true))
	if err != nil {
		// Keep what was written, so a later call retries the rest.
		return fmt.Errorf("update addresses of %s: %w", d.Name, err)
	}
	s.w.rules = want
	return nil
}

// sync writes (deletes false) or deletes (deletes true) the trie entries in
// which want differs from have, updating have as it goes.
func (e *Egress) sync(policyID uint32, have, want *netState, deletes bool) error {
	var errs []error
	if !deletes {
		for ent, claims := range want.entries {
			rule := minRule(claims)
			if old, ok := have.entries[ent]; ok && minRule(old) == rule {
				have.entries[ent] = claims
				continue
			}
			if err := e.net.WriteEntry(policyID, ent, rule); err != nil {
				errs = append(errs, err)
				continue
			}
			have.entries[ent] = claims
		}
		return errors.Join(errs...)
	}
	for ent := range have.entries {
		if _, ok := want.entries[ent]; ok {
			continue
		}
		if err := e.net.DeleteEntry(policyID, ent); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(have.entries, ent)
	}
	return errors.Join(errs...)
}

// written is what the Net holds for one policy id, kept here and passed
// back to change or remove it: the Net keeps nothing per sandbox.
type written struct {
	rmu    sync.Mutex // guards rules and unix: the proxy, a resolve loop and Add write them
	links  *loader.NetLinks
	cgroup uint64 // the sandbox cgroup the links are attached to, 0 if none
	tabled bool   // the cgroup is in the standalone Net's sandbox table
	rules  *netState
	unix   loader.UnixAllow
}

// removeRules undoes everything written and attached for policy id: the
// links first (the programs leave the cgroup), then the standalone sandbox
// table entry, the trie entries, and what the Net keeps by policy id.
func (e *Egress) removeRules(id uint32, w *written) error {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	var errs []error
	if err := e.net.Detach(w.links); err != nil {
		errs = append(errs, err)
	}
	w.links = nil
	if w.tabled {
		if err := e.net.RemoveSandbox(w.cgroup); err != nil {
			errs = append(errs, err)
		}
		w.tabled = false
	}
	if w.rules != nil {
		if err := e.sync(id, w.rules, newNetState(), true); err != nil {
			errs = append(errs, err)
		}
		w.rules = nil
	}
	if err := e.net.RemovePolicy(id, w.unix, w.cgroup); err != nil {
		errs = append(errs, err)
	}
	w.unix = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove network policy %d: %w", id, err)
	}
	return nil
}
