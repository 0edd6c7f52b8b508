//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// The project usually lies inside the home tree (or is the home, when run
// from ~): both are walked for name rules, and a directory must be read
// once, not once per tree. Start-up time with a large home is this walk.
func TestWalkReadsEachDirectoryOnce(t *testing.T) {
	home := t.TempDir()
	proj := filepath.Join(home, "src", "proj")
	dirs := []string{"src/proj/a/b", "src/proj/c", "docs/x"}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	_ = filepath.WalkDir(home, func(_ string, d os.DirEntry, _ error) error {
		if d.IsDir() {
			n++
		}
		return nil
	})
	c, err := policy.Compile(&policy.Policy{DenyRead: []policy.PathRule{{Pattern: ".env"}}}, policy.Env{Home: home, ProjectRoot: proj})
	if err != nil {
		t.Fatal(err)
	}
	for _, project := range []string{proj, home} {
		p, err := newPlan(c, home, project, nil, 1000, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if p.visited != n || len(p.tree) != n {
			t.Errorf("project %s: %d directories read, %d in the tree; want each of the %d once", project, p.visited, len(p.tree), n)
		}
	}
}
