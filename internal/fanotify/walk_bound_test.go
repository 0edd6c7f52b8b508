//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestWalkBoundsUnrelatedFiles: past the bound on unrelated files (only
// candidates for ignore masks) the walk stops recording them, and still
// protects every file a rule matches, however many unrelated files came
// first.
func TestWalkBoundsUnrelatedFiles(t *testing.T) {
	home := t.TempDir()
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(home, fmt.Sprintf("a%02d.txt", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	key := filepath.Join(home, "zz.pem") // after the unrelated files in the walk's order
	if err := os.WriteFile(key, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pol, _ := policy.Merge(policy.Defaults(), nil, false)
	c, err := policy.Compile(pol, policy.Env{Home: home, ProjectRoot: home})
	if err != nil {
		t.Fatal(err)
	}
	for _, bound := range []int{0, 5} {
		p, err := newPlan(c, home, home, nil, 100, bound)
		if err != nil {
			t.Fatal(err)
		}
		want := 20
		if bound > 0 {
			want = bound
		}
		if len(p.unrelated) != want {
			t.Errorf("bound %d: %d unrelated files recorded, want %d", bound, len(p.unrelated), want)
		}
		found := false
		for _, path := range p.protected {
			found = found || path == key
		}
		if !found || p.marks[key] == 0 {
			t.Errorf("bound %d: %s not protected (protected %v)", bound, key, p.protected)
		}
	}
}
