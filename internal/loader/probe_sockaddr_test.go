//go:build linux

package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// The sock_addr probe attaches to a test cgroup below the parent it is
// given, and leaves neither the cgroup nor a parent it created.
func TestProbeSockAddrReal(t *testing.T) {
	testutil.RequireRoot(t)
	root, err := cgroup.Mountpoint()
	if err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	parent := fmt.Sprintf("aigate-doctor-test-%d", os.Getpid())
	t.Cleanup(func() {
		os.Remove(filepath.Join(root, parent, fmt.Sprintf("doctor-probe-%d", os.Getpid())))
		os.Remove(filepath.Join(root, parent))
	})
	if err := ProbeSockAddr(parent); err != nil {
		t.Fatalf("sock_addr probe: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, parent)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the probe left its cgroup parent: %v", err)
	}

	// An existing parent stays, empty.
	if err := os.Mkdir(filepath.Join(root, parent), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ProbeSockAddr(parent); err != nil {
		t.Fatalf("sock_addr probe: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(root, parent))
	if err != nil {
		t.Fatalf("the probe removed a parent it did not create: %v", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("the probe left cgroup %s", e.Name())
		}
	}
}
