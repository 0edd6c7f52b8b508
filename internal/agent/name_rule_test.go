package agent

import (
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestNameRuleText: Name gives a raw event its sandbox and the rule as
// written; rule 0 (denied unchecked) and an id the policy does not have
// stay without text. Untagged, so that it runs on macOS too, where run
// calls Name.
func TestNameRuleText(t *testing.T) {
	c := &policy.Compiled{Rules: []policy.Rule{{ID: 1, Pattern: ".env"}, {ID: 2, Pattern: "metadata"}}}
	for _, tc := range []struct {
		rule uint32
		want string
	}{{2, "metadata"}, {1, ".env"}, {0, ""}, {3, ""}} {
		e := events.Event{Rule: tc.rule, Backend: "pf"}
		Name(&e, "_aigate", c)
		if e.Sandbox != "_aigate" || e.RuleText != tc.want || e.Rule != tc.rule || e.Backend != "pf" {
			t.Errorf("rule %d: %+v, want sandbox _aigate, rule text %q", tc.rule, e, tc.want)
		}
	}
}
