//go:build linux

package backend

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestCgroupLive: a kept set's sandbox table is emptied only under
// cgroups that are gone, wherever in the hierarchy they were.
func TestCgroupLive(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	root, _ := cgroup.Mountpoint()
	parent := fmt.Sprintf("aigate-test/live-%d", os.Getpid())
	g, err := cgroup.Create(parent, "sb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = g.Remove()
		_ = os.Remove(filepath.Join(root, parent))
		_ = os.Remove(filepath.Join(root, "aigate-test"))
	})
	if !cgroupLive(g.ID) {
		t.Fatalf("cgroup %s (id %d) counted as gone", g.Path, g.ID)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if cgroupLive(g.ID) {
		t.Fatalf("removed cgroup %s (id %d) counted as live", g.Path, g.ID)
	}
}
