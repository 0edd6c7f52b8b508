package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Cloud metadata services hand out credentials to whoever asks from the
// machine; they stay denied even with net: allow unless allow_net lists
// their exact address.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("fd00:ec2::254"),
}

// LoopbackPrefixes are the destinations allow_loopback covers. Linux routes
// connect() to the unspecified address (0.0.0.0, ::) to the local host, so
// they count as loopback: otherwise allow_loopback: false could be bypassed.
var LoopbackPrefixes = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("0.0.0.0/32"),
	netip.MustParsePrefix("::/128"),
}

// Compile turns a merged policy into the flat rule sets for env.
//
// Rule ids are 1..n in a stable order: deny_read, deny_write and deny_exec
// entries as listed, then the network rules (allow_net entries as listed, the
// built-in cloud metadata rule when it applies, the allow_loopback rule
// unless it is all, and "net: deny" whose id is Net.DenyRule), then the
// allow_unix entries, then the except_read entries (Read.Except). "~/"
// expands to env.Home and anchored patterns are
// joined to env.ProjectRoot; both must be absolute when a rule needs them.
// A value that two rules produce (".env" twice, or "~/x" and "/home/u/x") is
// kept once, with the first rule's id. Errors name the rule's Source.
func Compile(p *Policy, env Env) (*Compiled, error) {
	c := &Compiled{
		Mode:    cmp.Or(p.Mode, ModeEnforce),
		Backend: cmp.Or(p.Backend, BackendAuto),
		Limits:  p.Limits,
		DNS:     p.DNS,
		Env:     p.Env,
		Userns:  p.Userns,
		IOUring: p.IOUring,
	}
	b := &builder{c: c, env: env, seen: map[*[]Entry]map[string]bool{}}
	for _, list := range []struct {
		access Access
		rules  []PathRule
		set    *FileSet
	}{
		{AccessRead, p.DenyRead, &c.Read},
		{AccessWrite, p.DenyWrite, &c.Write},
		{AccessExec, p.DenyExec, &c.Exec},
	} {
		for _, r := range list.rules {
			if err := b.fileRule(list.access, r, list.set); err != nil {
				return nil, err
			}
		}
	}
	if err := b.net(p); err != nil {
		return nil, err
	}
	for _, r := range p.AllowUnix {
		if err := b.fileRule(0, r, &c.Net.Unix); err != nil {
			return nil, err
		}
	}
	if len(p.ExceptRead) > 0 {
		c.Read.Except = &FileSet{}
		for _, r := range p.ExceptRead {
			if err := b.fileRule(AccessRead, r, c.Read.Except); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range p.MaskOutput {
		if e := checkRegexp(r.Pattern); e != nil {
			return nil, fmt.Errorf("%s: %w", r.Source, e)
		}
		c.Mask = append(c.Mask, regexp.MustCompile(r.Pattern))
	}
	b.carveOut()
	for _, s := range []*FileSet{&c.Read, &c.Write, &c.Exec, &c.Net.Unix} {
		s.reindex()
	}
	return c, nil
}

type builder struct {
	c      *Compiled
	env    Env
	seen   map[*[]Entry]map[string]bool
	carves []carve
}

func (b *builder) rule(access Access, pattern string, src Source) RuleID {
	id := RuleID(len(b.c.Rules) + 1)
	b.c.Rules = append(b.c.Rules, Rule{ID: id, Access: access, Pattern: pattern, Source: src})
	return id
}

// add appends value to list unless an earlier rule produced it.
func (b *builder) add(list *[]Entry, value string, id RuleID) {
	seen := b.seen[list]
	if seen == nil {
		seen = map[string]bool{}
		b.seen[list] = seen
	}
	if !seen[value] {
		seen[value] = true
		*list = append(*list, Entry{Value: value, Rule: id})
	}
}

func (b *builder) fileRule(access Access, r PathRule, set *FileSet) error {
	pat, perr := parsePattern(r.Pattern)
	if perr != nil {
		return fmt.Errorf("%s: %w", r.Source, perr)
	}
	var value string
	var list *[]Entry
	switch pat.kind {
	case kindName:
		value, list = pat.value, &set.Names
	case kindPrefix:
		value, list = pat.value, &set.NamePrefix
	case kindSuffix:
		value, list = pat.value, &set.NameSuffix
	case kindAbs:
		value, list = pat.value, &set.Paths
	case kindHome, kindProject:
		base, what := b.env.Home, "the home directory"
		if pat.kind == kindProject {
			base, what = b.env.ProjectRoot, "the project root"
		}
		if !path.IsAbs(base) {
			return fmt.Errorf("%s: pattern %q is relative to %s, which is unknown (got %q)", r.Source, r.Pattern, what, base)
		}
		value, list = path.Join(base, pat.value), &set.Paths
		if value == "/" {
			return fmt.Errorf("%s: pattern %q expands to \"/\", which would match every file", r.Source, r.Pattern)
		}
	}
	if len(value) > maxPathLen {
		return fmt.Errorf("%s: pattern %q expands to a path longer than %d bytes: %s", r.Source, r.Pattern, maxPathLen, value)
	}
	id := b.rule(access, r.Pattern, r.Source)
	b.add(list, value, id)
	if len(r.Except) > 0 {
		if list != &set.Paths {
			return fmt.Errorf("%s: pattern %q: only an anchored path can have exceptions", r.Source, r.Pattern)
		}
		for _, e := range r.Except {
			e = path.Clean(e)
			if !path.IsAbs(e) || !strings.HasPrefix(e, value+"/") {
				return fmt.Errorf("%s: exception %q is not beneath %s", r.Source, e, value)
			}
			b.carves = append(b.carves, carve{set: set, path: e, rule: id, of: value})
		}
	}
	return nil
}

// carve is an exception of a Paths rule (PathRule.Except), added to its
// set once every rule is (carveOut).
type carve struct {
	set  *FileSet
	path string
	rule RuleID
	of   string // the rule's own Paths value
}

// carveOut adds the carves to their sets, each only where no other Paths
// entry of its set is it or lies above it: an exception of one run rule
// never uncovers what another rule denies (it stays denied, fail closed).
func (b *builder) carveOut() {
	for _, c := range b.carves {
		covered := false
		for _, e := range c.set.Paths {
			if e.Value == c.of && e.Rule == c.rule {
				continue
			}
			if e.Value == c.path || e.Value == "/" || strings.HasPrefix(c.path, e.Value+"/") {
				covered = true
				break
			}
		}
		if !covered {
			c.set.Carve = append(c.set.Carve, Entry{Value: c.path, Rule: c.rule})
		}
	}
}

func (b *builder) net(p *Policy) error {
	n := &b.c.Net
	n.Mode, n.Loopback, n.Inbound = cmp.Or(p.Net, NetDeny), cmp.Or(p.Loopback, LoopbackOwn), p.Inbound
	for _, ep := range p.AllowNet {
		// Entries of a hand-built Policy may hold only Raw.
		if ep.Domain == "" && !ep.Prefix.IsValid() {
			parsed, err := parseEndpoint(ep.Raw)
			if err != nil {
				return fmt.Errorf("%s: %w", ep.Source, err)
			}
			parsed.Source, ep = ep.Source, parsed
		}
		if msg, _ := checkDomain(ep.Domain); ep.Domain != "" && msg != "" {
			return fmt.Errorf("%s: allow_net entry %q: %s", ep.Source, ep.Raw, msg)
		}
		if ep.Raw == "" {
			ep.Raw = ep.String()
		}
		id := b.rule(0, ep.Raw, ep.Source)
		if ep.Domain != "" {
			if slices.ContainsFunc(n.Domains, func(d DomainEntry) bool {
				return d.Name == ep.Domain && d.Wildcard == ep.Wildcard && d.Port == ep.Port
			}) {
				continue
			}
			n.Domains = append(n.Domains, DomainEntry{Name: ep.Domain, Wildcard: ep.Wildcard, Port: ep.Port, Rule: id})
			continue
		}
		n.Allow = append(n.Allow, NetEntry{Prefix: canonicalPrefix(ep.Prefix), Port: ep.Port, Rule: id})
	}

	var metadata []netip.Prefix
	for _, a := range metadataAddrs {
		pfx := netip.PrefixFrom(a, a.BitLen())
		if !slices.ContainsFunc(n.Allow, func(e NetEntry) bool { return e.Prefix == pfx }) {
			metadata = append(metadata, pfx)
		}
	}
	if len(metadata) > 0 {
		id := b.rule(0, "cloud metadata service (169.254.169.254, fd00:ec2::254)", Source{})
		for _, pfx := range metadata {
			n.Deny = append(n.Deny, NetEntry{Prefix: pfx, Rule: id})
		}
	}
	if n.Loopback != LoopbackAll {
		n.LoopbackRule = b.rule(0, "allow_loopback: "+string(n.Loopback), p.LoopbackSource)
	}
	if n.Mode == NetDeny {
		n.DenyRule = b.rule(0, "net: deny", p.NetSource)
	}
	// Most specific first: the first matching entry is the one reported.
	bySpecificity := func(x, y NetEntry) int {
		if c := cmp.Compare(y.Prefix.Bits(), x.Prefix.Bits()); c != 0 {
			return c
		}
		if c := cmp.Compare(y.Port, x.Port); c != 0 {
			return c
		}
		return x.Prefix.Addr().Compare(y.Prefix.Addr())
	}
	slices.SortStableFunc(n.Allow, bySpecificity)
	slices.SortStableFunc(n.Deny, bySpecificity)
	n.Allow = slices.CompactFunc(n.Allow, func(x, y NetEntry) bool { return x.Prefix == y.Prefix && x.Port == y.Port })
	return nil
}

// String returns the canonical spelling of an endpoint, for messages.
func (e Endpoint) String() string {
	host := e.Domain
	if e.Wildcard {
		host = "*." + host
	}
	if host == "" {
		host = e.Prefix.String()
		if e.Prefix.IsSingleIP() {
			host = e.Prefix.Addr().String()
		}
		if e.Port != 0 && strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	if e.Port != 0 {
		return fmt.Sprintf("%s:%d", host, e.Port)
	}
	return host
}
