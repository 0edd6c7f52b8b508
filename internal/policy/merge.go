package policy

import (
	"cmp"
	"fmt"
	"slices"
)

// Merge layers the project file over the global one.
//
// global may be nil: Defaults() is used. project may be nil. A setting the
// global file leaves out takes its built-in default (mode: enforce, backend:
// auto, net: deny, allow_loopback: own); lists a file leaves out are empty.
// The global file's allow_* entries cancel its own deny entries.
//
// From the project file, whatever tightens the policy always applies: deny_*
// entries, net: deny, allow_loopback: false, mode: enforce, lower resource
// limits, mask_output entries. Whatever loosens it applies only when
// projectTrusted is true (the user ran `aigate trust` on this exact content):
// allow_read, allow_write and allow_exec (which cancel inherited deny entries
// written with the same pattern), except_read, allow_net, net: allow,
// allow_loopback own over false or all over either, allow_inbound: true,
// allow_userns: true, allow_io_uring: true, allow_unix, shared_caches, mode: audit, a backend other than auto, higher or
// removed resource limits, and dns settings. Dropped entries come back as
// warnings naming file and line. A clone of a hostile repository therefore
// cannot open the network for itself, but can protect more files.
//
// Rules are deduplicated by their normal form ("secrets/" == "secrets"); the
// first occurrence, and its Source, is kept.
func Merge(global, project *Config, projectTrusted bool) (*Policy, []Warning) {
	if global == nil {
		global = Defaults()
	}
	p := &Policy{Net: NetDeny, Mode: ModeEnforce, Backend: BackendAuto, Loopback: LoopbackOwn}
	m := &merger{p: p}

	m.layer(global, true, false)
	if project != nil {
		m.layer(project, projectTrusted, true)
	}
	p.addCacheRules()
	return p, m.warnings
}

type merger struct {
	p        *Policy
	warnings []Warning
}

// layer applies c. trusted says whether loosening entries apply; upper is
// false for the global file, whose settings replace the built-in defaults.
func (m *merger) layer(c *Config, trusted, upper bool) {
	p := m.p
	first := len(m.warnings)
	defer func() { // report in line order
		slices.SortStableFunc(m.warnings[first:], func(a, b Warning) int { return cmp.Compare(a.Source.Line, b.Source.Line) })
	}()
	loosen := func(line int, what string) bool {
		if trusted {
			return true
		}
		m.warnings = append(m.warnings, Warning{
			Source: Source{File: c.Path, Line: line},
			Msg: fmt.Sprintf("%s ignored: it loosens the policy and this project file is not trusted "+
				"(review it, then run `aigate trust`)", what),
		})
		return false
	}

	// A project's allow_* entries cancel entries of the layers below it, so
	// they go before its own deny entries (cancelling those would be
	// pointless); the global file's cancel its own deny entries.
	cancelAll := func() {
		p.DenyRead = m.cancel("allow_read", "deny_read", c.AllowRead, p.DenyRead, loosen)
		p.DenyWrite = m.cancel("allow_write", "deny_write", c.AllowWrite, p.DenyWrite, loosen)
		p.DenyExec = m.cancel("allow_exec", "deny_exec", c.AllowExec, p.DenyExec, loosen)
	}
	if upper {
		cancelAll()
	}
	p.DenyRead = appendRules(p.DenyRead, c.DenyRead)
	p.DenyWrite = appendRules(p.DenyWrite, c.DenyWrite)
	p.DenyExec = appendRules(p.DenyExec, c.DenyExec)
	if !upper {
		cancelAll()
	}
	p.MaskOutput = appendRegexps(p.MaskOutput, c.MaskOutput)
	p.Env.Deny = appendEnv(p.Env.Deny, c.DenyEnv)
	for _, r := range c.AllowEnv {
		if loosen(r.Source.Line, fmt.Sprintf("allow_env entry %q", r.Pattern)) {
			p.Env.Allow = appendEnv(p.Env.Allow, []PathRule{r})
		}
	}

	src := func(line int) Source { return Source{File: c.Path, Line: line} }
	if c.Mode != nil && *c.Mode != p.Mode {
		if *c.Mode == ModeEnforce || loosen(c.ModeLine, "mode: "+string(*c.Mode)) {
			p.Mode, p.ModeSource = *c.Mode, src(c.ModeLine)
		}
	}
	if c.Backend != nil && *c.Backend != p.Backend {
		if *c.Backend == BackendAuto || loosen(c.BackendLine, "backend: "+string(*c.Backend)) {
			p.Backend, p.BackendSource = *c.Backend, src(c.BackendLine)
		}
	}
	if c.Net != nil && *c.Net != p.Net {
		if *c.Net == NetDeny || loosen(c.NetLine, "net: "+string(*c.Net)) {
			p.Net, p.NetSource = *c.Net, src(c.NetLine)
		}
	}
	if c.AllowLoopbackTrue {
		m.warnings = append(m.warnings, Warning{
			Source: src(c.AllowLoopbackLine),
			Msg: "allow_loopback: true now means allow_loopback: own (the sandbox's own servers and the " +
				"loopback ports allow_net lists, not the other services on this machine's loopback): " +
				"write allow_loopback: own to keep that, or allow_loopback: all to reach every local service as before",
		})
	}
	if c.AllowLoopback != nil && *c.AllowLoopback != p.Loopback {
		l := *c.AllowLoopback
		if l.rank() < p.Loopback.rank() || loosen(c.AllowLoopbackLine, "allow_loopback: "+string(l)) {
			p.Loopback, p.LoopbackSource = l, src(c.AllowLoopbackLine)
		}
	}
	if c.AllowInbound != nil && *c.AllowInbound != p.Inbound {
		if !*c.AllowInbound || loosen(c.AllowInboundLine, "allow_inbound: true") {
			p.Inbound, p.InboundSource = *c.AllowInbound, src(c.AllowInboundLine)
		}
	}
	if c.AllowUserns != nil && *c.AllowUserns != p.Userns {
		if !*c.AllowUserns || loosen(c.AllowUsernsLine, "allow_userns: true") {
			p.Userns, p.UsernsSource = *c.AllowUserns, src(c.AllowUsernsLine)
		}
	}
	if c.AllowIOUring != nil && *c.AllowIOUring != p.IOUring {
		if !*c.AllowIOUring || loosen(c.AllowIOUringLine, "allow_io_uring: true") {
			p.IOUring, p.IOUringSource = *c.AllowIOUring, src(c.AllowIOUringLine)
		}
	}
	for _, ep := range c.AllowNet {
		if loosen(ep.Source.Line, fmt.Sprintf("allow_net entry %q", ep.Raw)) {
			p.AllowNet = appendEndpoint(p.AllowNet, ep)
		}
	}
	for _, r := range c.ExceptRead {
		if loosen(r.Source.Line, fmt.Sprintf("except_read entry %q", r.Pattern)) {
			p.ExceptRead = appendRules(p.ExceptRead, []PathRule{r})
		}
	}
	for _, r := range c.AllowUnix {
		if loosen(r.Source.Line, fmt.Sprintf("allow_unix entry %q", r.Pattern)) {
			p.AllowUnix = appendRules(p.AllowUnix, []PathRule{r})
		}
	}
	for _, r := range c.Writable {
		if loosen(r.Source.Line, fmt.Sprintf("writable entry %q", r.Pattern)) {
			p.Writable = appendRules(p.Writable, []PathRule{r})
		}
	}
	for _, r := range c.SharedCaches {
		if loosen(r.Source.Line, sharedCachesMsg(r)) {
			p.SharedCaches = appendRules(p.SharedCaches, []PathRule{r})
		}
	}
	if c.DNS != nil {
		d := p.DNS
		if c.DNS.MinTTL != 0 {
			d.MinTTL = c.DNS.MinTTL
		}
		if c.DNS.MaxTTL != 0 {
			d.MaxTTL = c.DNS.MaxTTL
		}
		if d != p.DNS && loosen(c.DNSLine, "dns settings") {
			p.DNS = d
		}
	}
	if c.ResourceLimits != nil {
		l, lines := *c.ResourceLimits, c.LimitLines
		p.Limits.MaxMemory = mergeLimit(p.Limits.MaxMemory, l.MaxMemory, lines.MaxMemory, "max_memory", loosen)
		p.Limits.MaxCPUPercent = mergeLimit(p.Limits.MaxCPUPercent, l.MaxCPUPercent, lines.MaxCPUPercent, "max_cpu_percent", loosen)
		p.Limits.MaxPIDs = mergeLimit(p.Limits.MaxPIDs, l.MaxPIDs, lines.MaxPIDs, "max_pids", loosen)
		if lines.IfUnavailable != 0 && l.Required != p.Limits.Required &&
			(l.Required || loosen(lines.IfUnavailable, "resource_limits.if_unavailable: warn")) {
			p.Limits.Required = l.Required
		}
	}
}

// cancel removes from denies the entries that allows name with the same
// normal form. A cancellation loosens: loosen decides whether it applies. An allow entry that cancels nothing is reported: it is almost
// always a pattern spelt differently from the deny entry it was meant for.
func (m *merger) cancel(allowKey, denyKey string, allows, denies []PathRule, loosen func(int, string) bool) []PathRule {
	for _, a := range allows {
		ak, err := parsePattern(a.Pattern)
		if err != nil {
			continue // Parse rejected it already; a hand-built Config may not have
		}
		var kept []PathRule
		for _, d := range denies {
			if dk, err := parsePattern(d.Pattern); err == nil && dk == ak {
				continue
			}
			kept = append(kept, d)
		}
		if len(kept) == len(denies) {
			m.warnings = append(m.warnings, Warning{
				Source: a.Source,
				Msg: fmt.Sprintf("%s entry %q cancels no %s entry; write it exactly as the deny entry it is meant to cancel",
					allowKey, a.Pattern, denyKey),
			})
			continue
		}
		if loosen(a.Source.Line, fmt.Sprintf("%s entry %q", allowKey, a.Pattern)) {
			denies = kept
		}
	}
	return denies
}

// mergeLimit returns the limit after a layer sets value (0: unlimited) on
// line (0: not set). Lower is tighter; raising or removing a limit loosens.
func mergeLimit[T uint32 | uint64](cur, value T, line int, key string, loosen func(int, string) bool) T {
	if line == 0 || value == cur {
		return cur
	}
	tighter := value != 0 && (cur == 0 || value < cur)
	shown := fmt.Sprint(value)
	if key == "max_memory" {
		shown = formatSize(uint64(value))
	}
	if tighter || loosen(line, fmt.Sprintf("resource_limits.%s: %s", key, shown)) {
		return value
	}
	return cur
}

// appendRules appends the rules of add whose normal form is not in rules.
func appendRules(rules, add []PathRule) []PathRule {
	seen := map[pattern]bool{}
	for _, r := range rules {
		k, _ := parsePattern(r.Pattern)
		seen[k] = true
	}
	for _, r := range add {
		k, err := parsePattern(r.Pattern)
		if err == nil && seen[k] {
			continue
		}
		seen[k] = true
		rules = append(rules, r)
	}
	return rules
}

func appendRegexps(rules, add []PathRule) []PathRule {
	for _, r := range add {
		dup := false
		for _, x := range rules {
			dup = dup || x.Pattern == r.Pattern
		}
		if !dup {
			rules = append(rules, r)
		}
	}
	return rules
}

// appendEndpoint appends ep unless an equal entry is there already.
func appendEndpoint(eps []Endpoint, ep Endpoint) []Endpoint {
	for _, x := range eps {
		if x.Domain == ep.Domain && x.Wildcard == ep.Wildcard && x.Prefix == ep.Prefix && x.Port == ep.Port {
			return eps
		}
	}
	return append(eps, ep)
}
