//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestKeptSets: what a test binary's runs kept pinned is removed at its
// end, but not a set that was there before, nor one a run holds (its
// lock); the root goes when it was made during the tests and is empty.
func TestKeptSets(t *testing.T) {
	testutil.RequireRoot(t)
	var fs syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/bpf", &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		testutil.SkipUnlessKernel(t, "no BPF filesystem at /sys/fs/bpf")
	}
	root := fmt.Sprintf("/sys/fs/bpf/aigate-test-keptsets-%d", os.Getpid())
	old := loader.KeptRoot
	loader.KeptRoot = root
	t.Cleanup(func() {
		loader.KeptRoot = old
		os.RemoveAll(root)
	})
	mkdir := func(name string) string {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}

	clean := KeptSets() // no root yet
	mkdir("net-made")
	clean()
	if _, err := os.Lstat(root); !os.IsNotExist(err) {
		t.Fatalf("%s after the cleanup: %v, want it removed", root, err)
	}

	earlier := mkdir("net-earlier")
	clean = KeptSets()
	made := mkdir("net-made")
	used := mkdir("net-used")
	f, err := os.Open(used)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	clean()
	for p, want := range map[string]bool{earlier: true, made: false, used: true} {
		if _, err := os.Lstat(p); (err == nil) != want {
			t.Errorf("%s after the cleanup: %v, want kept %v", p, err, want)
		}
	}
}
