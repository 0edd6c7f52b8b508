//go:build linux

package fanotify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// The fanotify probe really has an open denied: on this kind of machine
// fanotify permission events work (the fanotify backend's tests rely on it).
func TestProbeReal(t *testing.T) {
	testutil.RequireRoot(t)
	before := tempProbes(t)
	err := Probe()
	if err != nil && strings.HasPrefix(err.Error(), "fanotify_init") && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)) {
		testutil.SkipUnlessKernel(t, "no fanotify permission events: "+err.Error())
	}
	if err != nil {
		t.Fatalf("fanotify probe: %v", err)
	}
	if after := tempProbes(t); after != before {
		t.Errorf("the probe left %d test directories behind", after-before)
	}
}

func tempProbes(t *testing.T) int {
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "aigate-doctor-*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}
