//go:build linux

package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// Limits the hierarchy cannot apply are said in one short line, not one
// long line each on every run.
func TestMissingControllersOneWarning(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("hugetlb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	warns, err := applyLimits(root, nil, policy.ResourceLimits{MaxMemory: 1 << 30, MaxCPUPercent: 200, MaxPIDs: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "memory.max=1073741824 (no memory controller), pids.max=100 (no pids controller)") || len(warns[0]) > 240 {
		t.Fatalf("warnings: %q", warns)
	}
}
