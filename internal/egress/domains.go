//go:build linux

package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/aigate-dev/aigate/internal/policy"
)

// Resolver is the part of *net.Resolver that ResolveDomains needs.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolveDomains resolves the allowed domains once, for setPolicy, when no
// DNS proxy learns their addresses from the sandbox's own queries. Wildcard
// entries are skipped: only the proxy can learn the names below them. The
// map holds every name that resolved; the error lists those that did not,
// so the caller can decide whether a missing name is fatal.
func ResolveDomains(ctx context.Context, domains []policy.DomainEntry, r Resolver) (map[string][]netip.Addr, error) {
	out := map[string][]netip.Addr{}
	var errs []error
	for _, d := range domains {
		if d.Wildcard {
			continue
		}
		if _, done := out[d.Name]; done {
			continue
		}
		addrs, err := r.LookupNetIP(ctx, "ip", d.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve allowed domain %s: %w", d.Name, err))
			continue
		}
		for i, a := range addrs {
			addrs[i] = a.Unmap().WithZone("")
		}
		out[d.Name] = addrs
	}
	return out, errors.Join(errs...)
}
