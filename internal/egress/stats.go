//go:build linux

package egress

import (
	"cmp"
	"slices"

	"github.com/aigate-dev/aigate/internal/enforce"
)

// MergeStats adds up snapshots of several sources: counters of the same
// kind, operation and audit flag are summed, so that a backend built from
// parts still reports one exact value per series.
func MergeStats(parts ...enforce.Stats) enforce.Stats {
	sum := map[enforce.Counter]uint64{}
	var out enforce.Stats
	for _, p := range parts {
		out.EventsDropped += p.EventsDropped
		for _, c := range p.Violations {
			v := c.Value
			c.Value = 0
			sum[c] += v
		}
	}
	for c, v := range sum {
		c.Value = v
		out.Violations = append(out.Violations, c)
	}
	slices.SortFunc(out.Violations, func(a, b enforce.Counter) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Op, b.Op), cmp.Compare(b2i(a.Audit), b2i(b.Audit)))
	})
	return out
}
