package testutil

import (
	"os"
	"testing"
)

// RequireKernelEnv is the variable that turns every kernel-test skip into a
// failure. CI sets it for the host run and `make vmtest` sets it inside the
// VM, so a missing kernel feature can never pass silently.
const RequireKernelEnv = "AIGATE_REQUIRE_KERNEL"

// RequireLSMEnv does the same for tests that need BPF LSM. It is separate
// because the CI host itself refuses LSM programs: those tests must fail when
// they skip inside the VM, and may only skip on the host.
const RequireLSMEnv = "AIGATE_REQUIRE_LSM"

// SkipUnlessKernel skips the test with reason when it cannot run here, or
// fails it when AIGATE_REQUIRE_KERNEL=1 says this machine must be able to.
func SkipUnlessKernel(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequireKernelEnv) == "1" {
		t.Fatalf("kernel test cannot run (%s) but %s=1 requires it", reason, RequireKernelEnv)
	}
	t.Skip(reason)
}

// SkipUnlessLSM skips a BPF-LSM test with reason, or fails it when
// AIGATE_REQUIRE_LSM=1 (set by the VM harness) says BPF LSM must work here.
func SkipUnlessLSM(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequireLSMEnv) == "1" {
		t.Fatalf("BPF-LSM test cannot run (%s) but %s=1 requires it", reason, RequireLSMEnv)
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

// HostOnly skips a test inside the VM harness (AIGATE_VMTEST=1). vmtest
// runs every test of a package that has BPF-LSM tests; those of its tests
// that need host tools (useradd) or host timing run on the host instead,
// in make test-kernel, where a skip fails. Only call it in such packages.
func HostOnly(t testing.TB) {
	t.Helper()
	if os.Getenv("AIGATE_VMTEST") == "1" {
		t.Skip("host test: runs in make test-kernel; the VM runs this package's BPF-LSM tests only")
	}
}
