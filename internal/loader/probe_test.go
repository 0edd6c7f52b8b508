//go:build linux

package loader

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// On a kernel that cannot run BPF LSM (such as the CI host, which lists
// "bpf" but refuses trampoline programs) ProbeLSM must say so, with a
// reason that errors.Is recognises and a fix; where it works it must
// return nil. Either way the answer must agree with a real trial load.
func TestProbeLSM(t *testing.T) {
	testutil.RequireRoot(t)
	err := ProbeLSM()
	if os.Getenv(testutil.RequireLSMEnv) == "1" {
		if err != nil {
			t.Fatalf("ProbeLSM on a kernel that must support BPF LSM: %v", err)
		}
		return
	}
	// Cross-check against loading the full object: it must fail exactly when the
	// probe does.
	l, openErr := OpenLSM(LSMOptions{})
	if openErr == nil {
		l.Release()
	}
	if (err == nil) != (openErr == nil) {
		t.Fatalf("ProbeLSM() = %v but OpenLSM() = %v", err, openErr)
	}
	if err == nil {
		return
	}
	var pe *ProbeError
	if !errors.As(err, &pe) {
		t.Fatalf("ProbeLSM error %T is not a *ProbeError: %v", err, err)
	}
	if !errors.Is(err, ErrLSMNotCompiled) && !errors.Is(err, ErrLSMNotActive) && !errors.Is(err, ErrLSMLoadRefused) {
		t.Fatalf("ProbeLSM error matches no ErrLSM* reason: %v", err)
	}
	if pe.Fix == "" || !strings.Contains(err.Error(), pe.Fix) {
		t.Fatalf("ProbeLSM error gives no fix: %v", err)
	}
	t.Logf("BPF LSM unusable here, as expected: %v", err)
}

func TestGrubFix(t *testing.T) {
	got := grubFix("lockdown,capability,landlock")
	if !strings.Contains(got, "lsm=lockdown,capability,landlock,bpf") || !strings.Contains(got, "GRUB_CMDLINE_LINUX=") {
		t.Fatalf("grubFix = %q", got)
	}
}

func TestDescribeLockdown(t *testing.T) {
	for in, want := range map[string]string{
		"[none] integrity confidentiality\n": "kernel lockdown is off",
		"none [integrity] confidentiality\n": "kernel lockdown is in integrity mode, which does not restrict loading BPF programs",
		"none integrity [confidentiality]":   "kernel lockdown is in confidentiality mode, which refuses BPF helpers that read kernel memory",
		"garbage":                            "kernel lockdown state unknown (garbage)",
	} {
		if got := describeLockdown(in); got != want {
			t.Errorf("describeLockdown(%q) = %q, want %q", in, got, want)
		}
	}
}
