package dns

import (
	"strings"

	"github.com/aigate-dev/aigate/internal/policy"
)

// canonical lower-cases name and drops the trailing dot.
func canonical(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// matching returns the domain entries of np that allow name: exact entries
// equal to it and wildcard entries ("*.example.com") strictly above it.
func matching(domains []policy.DomainEntry, name string) []policy.DomainEntry {
	name = canonical(name)
	var out []policy.DomainEntry
	for _, d := range domains {
		if d.Wildcard {
			if strings.HasSuffix(name, "."+d.Name) {
				out = append(out, d)
			}
			continue
		}
		if name == d.Name {
			out = append(out, d)
		}
	}
	return out
}
