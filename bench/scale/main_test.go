//go:build linux

package main

import (
	"slices"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestPolicy checks that the generated policy parses and holds the rule
// count the figures are labelled with: deny_read and allow_net entries,
// besides the fixed deny_write file and loopback address.
func TestPolicy(t *testing.T) {
	for _, n := range []int{10, 100, 1000, 10000} {
		c, err := policy.Parse("config.yaml", []byte(Policy(n)))
		if err != nil {
			t.Fatalf("%d rules: %v", n, err)
		}
		if got := len(c.DenyRead) + len(c.AllowNet) - 1; got != n {
			t.Errorf("Policy(%d) has %d deny_read + allow_net rules besides the loopback address", n, got)
		}
		if len(c.DenyWrite) != 1 {
			t.Errorf("Policy(%d): deny_write %v, want the one protected file", n, c.DenyWrite)
		}
	}
}

func TestInts(t *testing.T) {
	if got := ints("10, 100,x,0,1000"); !slices.Equal(got, []int{10, 100, 1000}) {
		t.Errorf("ints = %v", got)
	}
}
