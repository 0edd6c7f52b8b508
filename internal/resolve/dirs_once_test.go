//go:build linux

package resolve

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestExecutablesDirOnce: a directory on PATH under two names (/bin and
// /usr/bin on a merged-/usr system) is listed once, so each name of a
// shared file is reported once.
func TestExecutablesDirOnce(t *testing.T) {
	bin := t.TempDir()
	box := filepath.Join(bin, "busybox")
	if err := os.WriteFile(box, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nc", "sh"} {
		if err := os.Symlink("busybox", filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	alias := filepath.Join(t.TempDir(), "bin")
	if err := os.Symlink(bin, alias); err != nil {
		t.Fatal(err)
	}
	set := policy.FileSet{Names: []policy.Entry{{Value: "nc", Rule: 1}}}
	_, shared := ExecutablesShared(set, []string{bin, alias})
	if len(shared) != 1 {
		t.Fatalf("shared = %+v, want busybox once", shared)
	}
	if got := shared[0]; !slices.Equal(got.Denied, []string{"nc"}) || !slices.Equal(got.Allowed, []string{"sh"}) {
		t.Fatalf("shared names = denied %v, allowed %v; want [nc] and [sh] once each", got.Denied, got.Allowed)
	}
}
