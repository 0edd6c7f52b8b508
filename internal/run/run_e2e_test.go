//go:build linux

package run

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// Helpers for the end-to-end tests of this package, which build the aigate
// binary and run it for real, as root, with the fanotify backend. The
// scenarios of `aigate run` itself (a blocked read, exit codes, signals, a
// pseudo-terminal) are in internal/e2e, against both backends; the helpers
// here are thin wrappers of that package's.

// TestMain removes the network programs that this package's embedded runs
// kept pinned (e2e.KeptSets).
func TestMain(m *testing.M) {
	cleanKept := e2e.KeptSets()
	code := m.Run()
	cleanKept()
	os.Exit(code)
}

// aigateBinary returns $AIGATE_BIN or builds aigate into the test's
// temporary directory (the build cache makes every build after the first a
// link only).
func aigateBinary(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	bin, _, err := e2e.Binary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// e2eProject makes a home with a project holding a .env, and an
// environment for aigate in which that home is the invoking user's.
func e2eProject(t *testing.T) (proj string, env []string) {
	t.Helper()
	home := t.TempDir()
	proj = filepath.Join(home, "proj")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proj, ".env"), []byte("API_KEY=secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env = e2e.CleanEnv(os.Environ())
	// An agent of the test's own, embedded in the run: never the
	// machine's (a service agent would otherwise serve these runs).
	return proj, append(env, "HOME="+home, "NO_COLOR=1", api.SocketEnv+"="+filepath.Join(t.TempDir(), "aigate.sock"))
}

// fanotifyRun is `aigate run --backend fanotify -- ARGV`, not started,
// with --trust-dir a directory of the test's own: the embedded agent's
// policy records go with the test, never into the machine's
// /var/lib/aigate/trust.
func fanotifyRun(t *testing.T, bin string, argv ...string) *exec.Cmd {
	t.Helper()
	trust := filepath.Join(t.TempDir(), "trust")
	if err := os.Mkdir(trust, 0o700); err != nil { // root's only, as aigate requires
		t.Fatal(err)
	}
	return exec.Command(bin, append([]string{"run", "--backend", "fanotify", "--trust-dir", trust, "--"}, argv...)...)
}

// assertNoSandboxOf checks that the run with the given aigate pid left no
// cgroup behind.
func assertNoSandboxOf(t *testing.T, pid int) {
	t.Helper()
	left, err := e2e.SandboxesOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range left {
		t.Errorf("sandbox cgroup %s left behind", name)
	}
}

// runBounded runs an aigate process with a deadline: a process that
// outlives it holding its output pipes (the fanotify guard inherits
// stderr) or a run that never ends must fail the test, not stall the
// package until go test's own timeout.
func runBounded(cmd *exec.Cmd) error {
	return e2e.RunBounded(cmd, 90*time.Second)
}
