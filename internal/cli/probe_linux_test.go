//go:build linux

package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/doctor"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// The fanotify probe really has an open denied: on this kind of machine
// fanotify permission events work (the fanotify backend's tests rely on it).
func TestProbeFanotifyReal(t *testing.T) {
	testutil.RequireRoot(t)
	before := tempProbes(t)
	err := probeFanotify()
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
	if err := probeSockAddr(parent); err != nil {
		t.Fatalf("sock_addr probe: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, parent)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the probe left its cgroup parent: %v", err)
	}

	// An existing parent stays, empty.
	if err := os.Mkdir(filepath.Join(root, parent), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := probeSockAddr(parent); err != nil {
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

// The LSM probe either works or says why not and what to do, with the
// loader's reason still matchable.
func TestProbeLSMReal(t *testing.T) {
	testutil.RequireRoot(t)
	err := probeLSM()
	if err == nil {
		return // a kernel with working BPF LSM (the VM)
	}
	var pe *doctor.ProbeError
	if !errors.As(err, &pe) || pe.Reason == "" || pe.Fix == "" {
		t.Fatalf("probe error %v (%T) has no reason and fix", err, err)
	}
	if !errors.Is(err, loader.ErrLSMLoadRefused) && !errors.Is(err, loader.ErrLSMNotActive) && !errors.Is(err, loader.ErrLSMNotCompiled) {
		t.Errorf("probe error %v matches none of the loader's reasons", err)
	}
	if strings.Contains(pe.Reason, pe.Fix) {
		t.Errorf("the reason repeats the fix: %q", pe.Reason)
	}
}

// The unix-socket probe agrees with the kernel version: the cgroup
// connect_unix/sendmsg_unix hooks exist from Linux 6.7 on.
func TestProbeUnixReal(t *testing.T) {
	testutil.RequireRoot(t)
	desc, err := probeUnix()
	var u unix.Utsname
	if uerr := unix.Uname(&u); uerr != nil {
		t.Fatal(uerr)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	if _, serr := fmt.Sscanf(rel, "%d.%d", &major, &minor); serr != nil {
		t.Fatalf("kernel release %q: %v", rel, serr)
	}
	hooks := major > 6 || major == 6 && minor >= 7
	switch {
	case hooks && (err != nil || !strings.HasPrefix(desc, "cgroup connect_unix")):
		t.Errorf("Linux %s has the cgroup unix hooks, but probeUnix = %q, %v", rel, desc, err)
	case !hooks && (!errors.Is(err, loader.ErrNoUnixHooks) || !strings.HasPrefix(desc, "none: ")):
		t.Errorf("Linux %s has no cgroup unix hooks, but probeUnix = %q, %v", rel, desc, err)
	}
}
