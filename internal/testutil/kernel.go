package testutil

import (
	"os"
	"testing"
)

// RequireKernelEnv is the variable that turns every kernel-test skip into a
// failure. CI and `make vmtest` set it, so a missing kernel feature can never
// pass silently.
const RequireKernelEnv = "AIGATE_REQUIRE_KERNEL"

// SkipUnlessKernel skips the test with reason when it cannot run here, or
// fails it when AIGATE_REQUIRE_KERNEL=1 says this machine must be able to.
func SkipUnlessKernel(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequireKernelEnv) == "1" {
		t.Fatalf("kernel test cannot run (%s) but %s=1 requires it", reason, RequireKernelEnv)
	}
	t.Skip(reason)
}

// RequireRoot skips (or, under AIGATE_REQUIRE_KERNEL=1, fails) unless the
// test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipUnlessKernel(t, "needs root")
	}
}
