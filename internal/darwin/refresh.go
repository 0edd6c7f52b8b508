package darwin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/aigate-dev/aigate/internal/policy"
)

// DefaultRefreshInterval is how often allowed domains are re-resolved. CDNs
// rotate addresses within minutes; a minute keeps the tables close to what
// the tool's own resolver sees without noticeable load.
const (
	DefaultRefreshInterval = time.Minute
	// MaxTableAddrs bounds each table. Addresses only accumulate during a
	// session (an address the tool resolved a minute ago may still be in
	// use), so a bound keeps a rotating CDN from growing a table forever.
	MaxTableAddrs = 4096
)

// Refresher keeps the pf allow tables in step with what the allowed domains
// resolve to while a session runs.
type Refresher struct {
	runner   Runner
	resolver Resolver
	domains  []policy.DomainEntry
	// known holds, per port table, every address the table holds: the
	// static allow_net addresses and all addresses resolved so far.
	known map[uint16]map[string]bool
}

func newRefresher(r Runner, res Resolver, n policy.NetPolicy) *Refresher {
	f := &Refresher{runner: r, resolver: res, known: map[uint16]map[string]bool{}}
	for _, d := range n.Domains {
		if !d.Wildcard {
			f.domains = append(f.domains, d)
		}
	}
	for _, e := range n.Allow {
		f.add(e.Port, prefixString(e.Prefix))
	}
	return f
}

func (f *Refresher) add(port uint16, s string) bool {
	set := f.known[port]
	if set == nil {
		set = map[string]bool{}
		f.known[port] = set
	}
	if set[s] || len(set) >= MaxTableAddrs {
		return false
	}
	set[s] = true
	return true
}

func (f *Refresher) merge(res map[uint16][]netip.Addr) map[uint16]bool {
	grown := map[uint16]bool{}
	for port, addrs := range res {
		for _, a := range addrs {
			if f.add(port, a.Unmap().String()) {
				grown[port] = true
			}
		}
	}
	return grown
}

// resolve looks every domain up. Failures are warnings: the domain stays
// unreachable until a later refresh resolves it, which is the safe side.
func (f *Refresher) resolve(ctx context.Context) (map[uint16][]netip.Addr, []string) {
	out := map[uint16][]netip.Addr{}
	var warns []string
	for _, d := range f.domains {
		if f.resolver == nil {
			warns = append(warns, fmt.Sprintf("allow_net %s: no resolver, not reachable", d.Name))
			continue
		}
		addrs, err := f.resolver.LookupNetIP(ctx, "ip", d.Name)
		if err != nil {
			warns = append(warns, fmt.Sprintf("allow_net %s: resolve: %v; not reachable until it resolves", d.Name, err))
			continue
		}
		out[d.Port] = append(out[d.Port], addrs...)
	}
	return out, warns
}

// Refresh resolves the domains once and replaces every table that gained
// addresses. It returns how many tables it replaced.
func (f *Refresher) Refresh(ctx context.Context) (int, error) {
	res, warns := f.resolve(ctx)
	grown := f.merge(res)
	var errs []error
	for _, w := range warns {
		errs = append(errs, errors.New(w))
	}
	n := 0
	for _, port := range sortedPorts(grown) {
		l := make([]string, 0, len(f.known[port]))
		for s := range f.known[port] {
			l = append(l, s)
		}
		sortAddrs(l)
		c := ReplaceTableCommand(TableName(AllowTable, port), l)
		if out, err := c.run(ctx, f.runner); err != nil {
			errs = append(errs, runError("refresh allowed addresses", c, out, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// Run refreshes every interval until ctx ends, passing each error to report
// (which may be nil).
func (f *Refresher) Run(ctx context.Context, interval time.Duration, report func(error)) {
	if interval <= 0 {
		interval = DefaultRefreshInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := f.Refresh(ctx); err != nil && report != nil {
				report(err)
			}
		}
	}
}
