package policy

import (
	"strings"
	"testing"
)

// TestIfUnavailable: resource_limits.if_unavailable is warn or refuse; a
// project may make it refuse, and only a trusted project may make it warn
// again.
func TestIfUnavailable(t *testing.T) {
	parse := func(yaml string) *Config {
		t.Helper()
		c, err := Parse("c.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	refuse := parse("resource_limits:\n  max_pids: 10\n  if_unavailable: refuse\n")
	warn := parse("resource_limits:\n  if_unavailable: warn\n")
	if !refuse.ResourceLimits.Required || refuse.LimitLines.IfUnavailable != 3 || warn.ResourceLimits.Required {
		t.Fatalf("parsed %+v %+v, %+v", refuse.ResourceLimits, refuse.LimitLines, warn.ResourceLimits)
	}
	if _, err := Parse("c.yaml", []byte("resource_limits:\n  if_unavailable: maybe\n")); err == nil || !strings.Contains(err.Error(), "c.yaml:2") {
		t.Errorf("if_unavailable: maybe: %v, want an error at c.yaml:2", err)
	}
	if p, _ := Merge(warn, refuse, false); !p.Limits.Required {
		t.Error("an untrusted project could not make limits required")
	}
	if p, _ := Merge(refuse, warn, false); !p.Limits.Required {
		t.Error("an untrusted project turned required limits into warnings")
	}
	if p, _ := Merge(refuse, warn, true); p.Limits.Required {
		t.Error("a trusted project could not turn required limits into warnings")
	}
}
