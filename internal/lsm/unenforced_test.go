//go:build linux

package lsm

import (
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestUnenforcedCopies: a kernel that cannot refuse copies makes every
// deny_exec rule show up as not fully enforced, named; one that can, or a
// policy without deny_exec, adds nothing.
func TestUnenforcedCopies(t *testing.T) {
	c := compiled(
		ruleSpec{policy.AccessExec, "names", "curl"},
		ruleSpec{policy.AccessExec, "paths", "/opt/tool"},
	)
	if got := unenforcedCopies(c, ""); got != nil {
		t.Errorf("kernel refuses copies: %q", got)
	}
	if got := unenforcedCopies(compiled(ruleSpec{policy.AccessRead, "names", ".env"}), "no IMA"); got != nil {
		t.Errorf("no deny_exec: %q", got)
	}
	got := unenforcedCopies(c, "a copy runs")
	if len(got) != 1 || !strings.Contains(got[0], "deny_exec curl, /opt/tool") || !strings.Contains(got[0], "a copy runs") {
		t.Errorf("got %q", got)
	}
}
