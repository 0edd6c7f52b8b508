//go:build linux

package sandbox

import (
	"testing"
)

// Consecutive sandboxes of one owner (a long-lived agent) get different
// names even when the earlier one has ended (issue 13: s1-p1960 twice),
// so that their events, metrics and logs can be told apart.
func TestConsecutiveSandboxesHaveDistinctNames(t *testing.T) {
	parent, _ := testParent(t)
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		sb := create(t, Config{Backend: &fakeBackend{}, Policy: testPolicy(), Parent: parent})
		if seen[sb.Info.Name] {
			t.Fatalf("sandbox %d is named %s again", i+1, sb.Info.Name)
		}
		seen[sb.Info.Name] = true
		if err := sb.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
