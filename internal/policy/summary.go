package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Default TTL clamps of the DNS proxy for DNS fields left at zero.
const (
	DefaultDNSMinTTL = 60 * time.Second
	DefaultDNSMaxTTL = time.Hour
)

// Effective returns the TTL clamps the DNS proxy applies for d.
func (d DNS) Effective() (minTTL, maxTTL time.Duration) {
	minTTL, maxTTL = d.MinTTL, d.MaxTTL
	if minTTL == 0 {
		minTTL = DefaultDNSMinTTL
	}
	if maxTTL == 0 {
		maxTTL = max(DefaultDNSMaxTTL, minTTL)
	}
	return minTTL, maxTTL
}

// Summary is a policy reduced to what decides how much it allows, in a
// canonical form that can be stored and compared later, by another
// version of aigate: patterns in their normal spelling, no sources, lists
// sorted. The agent keeps the summary of the user's last accepted global
// policy and compares every new one with it (Loosened).
type Summary struct {
	DenyRead   []string      `yaml:"deny_read,omitempty" json:"deny_read,omitempty"`
	DenyWrite  []string      `yaml:"deny_write,omitempty" json:"deny_write,omitempty"`
	DenyExec   []string      `yaml:"deny_exec,omitempty" json:"deny_exec,omitempty"`
	ExceptRead []string      `yaml:"except_read,omitempty" json:"except_read,omitempty"`
	Net        NetMode       `yaml:"net" json:"net"`
	AllowNet   []string      `yaml:"allow_net,omitempty" json:"allow_net,omitempty"`
	Mode       Mode          `yaml:"mode" json:"mode"`
	Backend    BackendChoice `yaml:"backend" json:"backend"`
	Loopback   LoopbackMode  `yaml:"allow_loopback" json:"allow_loopback"`
	Inbound    bool          `yaml:"allow_inbound,omitempty" json:"allow_inbound,omitempty"`
	Userns     bool          `yaml:"allow_userns,omitempty" json:"allow_userns,omitempty"`
	IOUring    bool          `yaml:"allow_io_uring,omitempty" json:"allow_io_uring,omitempty"`
	AllowUnix  []string      `yaml:"allow_unix,omitempty" json:"allow_unix,omitempty"`
	Writable   []string      `yaml:"writable,omitempty" json:"writable,omitempty"`
	DenyEnv    []string      `yaml:"deny_env,omitempty" json:"deny_env,omitempty"`
	AllowEnv   []string      `yaml:"allow_env,omitempty" json:"allow_env,omitempty"`
	MaskOutput []string      `yaml:"mask_output,omitempty" json:"mask_output,omitempty"`
	// Resource limits, 0 unlimited; LimitsRequired: if_unavailable: refuse.
	MaxMemory      uint64 `yaml:"max_memory,omitempty" json:"max_memory,omitempty"`
	MaxCPUPercent  uint32 `yaml:"max_cpu_percent,omitempty" json:"max_cpu_percent,omitempty"`
	MaxPIDs        uint32 `yaml:"max_pids,omitempty" json:"max_pids,omitempty"`
	LimitsRequired bool   `yaml:"limits_required,omitempty" json:"limits_required,omitempty"`
	// The DNS proxy's effective TTL clamps.
	DNSMinTTL time.Duration `yaml:"dns_min_ttl" json:"dns_min_ttl"`
	DNSMaxTTL time.Duration `yaml:"dns_max_ttl" json:"dns_max_ttl"`
}

// Summarize reduces p to its Summary.
func Summarize(p *Policy) Summary {
	s := Summary{
		DenyRead:       normalForms(p.DenyRead),
		DenyWrite:      normalForms(p.DenyWrite),
		DenyExec:       normalForms(p.DenyExec),
		ExceptRead:     normalForms(p.ExceptRead),
		Net:            p.Net,
		Mode:           p.Mode,
		Backend:        p.Backend,
		Loopback:       p.Loopback,
		Inbound:        p.Inbound,
		Userns:         p.Userns,
		IOUring:        p.IOUring,
		AllowUnix:      normalForms(p.AllowUnix),
		Writable:       normalForms(p.Writable),
		DenyEnv:        envNames(p.Env.Deny),
		AllowEnv:       envNames(p.Env.Allow),
		MaxMemory:      p.Limits.MaxMemory,
		MaxCPUPercent:  p.Limits.MaxCPUPercent,
		MaxPIDs:        p.Limits.MaxPIDs,
		LimitsRequired: p.Limits.Required,
	}
	s.DNSMinTTL, s.DNSMaxTTL = p.DNS.Effective()
	for _, ep := range p.AllowNet {
		s.AllowNet = append(s.AllowNet, ep.canonical())
	}
	for _, r := range p.MaskOutput {
		s.MaskOutput = append(s.MaskOutput, r.Pattern)
	}
	for _, l := range [][]string{s.AllowNet, s.MaskOutput} {
		slices.Sort(l)
	}
	s.AllowNet, s.MaskOutput = slices.Compact(s.AllowNet), slices.Compact(s.MaskOutput)
	return s
}

// normalForms returns the normal forms of rules, sorted, without duplicates.
func normalForms(rules []PathRule) []string {
	var out []string
	for _, r := range rules {
		if k, err := parsePattern(r.Pattern); err == nil {
			out = append(out, k.String())
		} else {
			out = append(out, r.Pattern) // Parse rejected it already
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func envNames(rules []PathRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, strings.ToUpper(r.Pattern))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// canonical spells ep so that equal entries are equal strings and the
// text parses back to ep.
func (ep Endpoint) canonical() string {
	host := ep.Domain
	if ep.Domain == "" {
		host = ep.Prefix.String()
		if ep.Prefix.IsSingleIP() {
			host = ep.Prefix.Addr().String()
		}
		if ep.Port != 0 && ep.Prefix.Addr().Is6() {
			host = "[" + host + "]"
		}
	} else if ep.Wildcard {
		host = "*." + host
	}
	if ep.Port != 0 {
		return fmt.Sprintf("%s:%d", host, ep.Port)
	}
	return host
}

// Loosened lists, for a person, every way in which now allows more than
// accepted: a deny_* entry removed or narrowed (replaced by one that
// covers less), an except_read, allow_net, allow_unix, writable or
// allow_env entry added that no accepted one covers, a deny_env or
// mask_output entry removed, net: deny to allow, allow_loopback wider,
// allow_inbound, allow_userns or allow_io_uring turned on, mode: audit, a
// weaker backend, a resource limit raised or removed, longer DNS TTLs.
// Tightening is not listed; nil means now loosens nothing.
func Loosened(accepted, now Summary) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	removed := func(key string, old, new []string, covers func(q, p string) bool) {
		for _, p := range old {
			if !slices.ContainsFunc(new, func(q string) bool { return covers(q, p) }) {
				add("%s %q removed", key, p)
			}
		}
	}
	added := func(key string, old, new []string, covers func(q, p string) bool) {
		for _, p := range new {
			if !slices.ContainsFunc(old, func(q string) bool { return covers(q, p) }) {
				add("%s %q added", key, p)
			}
		}
	}
	removed("deny_read", accepted.DenyRead, now.DenyRead, patternCovers)
	removed("deny_write", accepted.DenyWrite, now.DenyWrite, patternCovers)
	removed("deny_exec", accepted.DenyExec, now.DenyExec, patternCovers)
	added("except_read", accepted.ExceptRead, now.ExceptRead, patternCovers)
	if accepted.Net == NetDeny && now.Net != NetDeny {
		add("net: %s → %s", accepted.Net, now.Net)
	}
	added("allow_net", accepted.AllowNet, now.AllowNet, endpointCovers)
	if accepted.Mode != ModeAudit && now.Mode == ModeAudit {
		add("mode: %s → %s", accepted.Mode, now.Mode)
	}
	if backendRank(now.Backend) < backendRank(accepted.Backend) {
		add("backend: %s → %s", accepted.Backend, now.Backend)
	}
	if now.Loopback.rank() > accepted.Loopback.rank() {
		add("allow_loopback: %s → %s", accepted.Loopback, now.Loopback)
	}
	for _, f := range []struct {
		key      string
		old, new bool
	}{
		{"allow_inbound", accepted.Inbound, now.Inbound},
		{"allow_userns", accepted.Userns, now.Userns},
		{"allow_io_uring", accepted.IOUring, now.IOUring},
	} {
		if !f.old && f.new {
			add("%s: false → true", f.key)
		}
	}
	added("allow_unix", accepted.AllowUnix, now.AllowUnix, patternCovers)
	added("writable", accepted.Writable, now.Writable, patternCovers)
	removed("deny_env", accepted.DenyEnv, now.DenyEnv, envCovers)
	added("allow_env", accepted.AllowEnv, now.AllowEnv, envCovers)
	removed("mask_output", accepted.MaskOutput, now.MaskOutput, func(q, p string) bool { return q == p })
	limit := func(key string, old, new uint64, show func(uint64) string) {
		if old != 0 && (new == 0 || new > old) {
			shown := "unlimited"
			if new != 0 {
				shown = show(new)
			}
			add("resource_limits.%s: %s → %s", key, show(old), shown)
		}
	}
	limit("max_memory", accepted.MaxMemory, now.MaxMemory, formatSize)
	limit("max_cpu_percent", uint64(accepted.MaxCPUPercent), uint64(now.MaxCPUPercent), func(n uint64) string { return fmt.Sprint(n) })
	limit("max_pids", uint64(accepted.MaxPIDs), uint64(now.MaxPIDs), func(n uint64) string { return fmt.Sprint(n) })
	if accepted.LimitsRequired && !now.LimitsRequired {
		add("resource_limits.if_unavailable: refuse → warn")
	}
	if now.DNSMinTTL > accepted.DNSMinTTL {
		add("dns.min_ttl: %s → %s", accepted.DNSMinTTL, now.DNSMinTTL)
	}
	if now.DNSMaxTTL > accepted.DNSMaxTTL {
		add("dns.max_ttl: %s → %s", accepted.DNSMaxTTL, now.DNSMaxTTL)
	}
	return out
}

// backendRank orders the backend choices from the weakest: auto may fall
// back to fanotify where lsm would refuse to run.
func backendRank(b BackendChoice) int {
	switch b {
	case BackendFanotify:
		return 0
	case BackendLSM:
		return 2
	}
	return 1
}

// patternCovers reports whether every path the pattern p matches, q
// matches too (so replacing p by q loosens nothing). It answers true only
// for the plain cases: the same pattern, an anchored path beneath another
// with the same anchor, a name prefix or suffix that extends another.
// Anything else counts as not covered: Loosened then lists it, which a
// person can accept.
func patternCovers(q, p string) bool {
	if q == p {
		return true
	}
	qk, err1 := parsePattern(q)
	pk, err2 := parsePattern(p)
	if err1 != nil || err2 != nil {
		return false
	}
	if qk == pk {
		return true
	}
	if qk.kind != pk.kind {
		return false
	}
	switch qk.kind {
	case kindPrefix:
		return strings.HasPrefix(pk.value, qk.value)
	case kindSuffix:
		return strings.HasSuffix(pk.value, qk.value)
	case kindProject, kindHome, kindAbs:
		return qk.value == "." || strings.HasPrefix(pk.value+"/", strings.TrimSuffix(qk.value, "/")+"/")
	}
	return false
}

// endpointCovers reports whether the allow_net entry q allows everything
// p allows.
func endpointCovers(q, p string) bool {
	if q == p {
		return true
	}
	qe, err1 := parseEndpoint(q)
	pe, err2 := parseEndpoint(p)
	if err1 != nil || err2 != nil || (qe.Port != 0 && qe.Port != pe.Port) {
		return false
	}
	if qe.Domain == "" || pe.Domain == "" {
		return qe.Domain == "" && pe.Domain == "" && prefixCovers(qe.Prefix, pe.Prefix)
	}
	switch {
	case !qe.Wildcard:
		return !pe.Wildcard && qe.Domain == pe.Domain
	case pe.Wildcard && pe.Domain == qe.Domain:
		return true
	}
	return strings.HasSuffix(pe.Domain, "."+qe.Domain)
}

func prefixCovers(q, p netip.Prefix) bool {
	return q.Addr().Is4() == p.Addr().Is4() && q.Bits() <= p.Bits() && q.Contains(p.Addr())
}

// envCovers reports whether the deny_env/allow_env pattern q matches
// every name p matches (both upper case).
func envCovers(q, p string) bool {
	if q == p {
		return true
	}
	qb := strings.TrimSuffix(strings.TrimPrefix(q, "*"), "*")
	pb := strings.TrimSuffix(strings.TrimPrefix(p, "*"), "*")
	qPre, qSuf := strings.HasPrefix(q, "*"), strings.HasSuffix(q, "*") && len(q) > 1
	pPre, pSuf := strings.HasPrefix(p, "*"), strings.HasSuffix(p, "*") && len(p) > 1
	switch {
	case !pPre && !pSuf: // one name
		return matchEnv(q, p)
	case qPre && qSuf: // *X* covers any pattern whose fixed part holds X
		return strings.Contains(pb, qb)
	case qPre && pPre && !pSuf: // *X covers *YX
		return strings.HasSuffix(pb, qb)
	case qSuf && pSuf && !pPre: // X* covers XY*
		return strings.HasPrefix(pb, qb)
	}
	return false
}
