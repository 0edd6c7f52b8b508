//go:build linux

package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/doctor"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/testutil"
)

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
