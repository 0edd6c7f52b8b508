//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// BinEnv names a prebuilt aigate binary to test instead of building one.
const BinEnv = "AIGATE_BIN"

// VMBin is where `go run ./vmtest --bin bin/aigate` puts the binary in the
// guest, which has no Go toolchain to build one.
const VMBin = "/usr/local/bin/aigate"

// Binary returns the aigate binary to test: $AIGATE_BIN, else VMBin inside
// the vmtest guest (AIGATE_VMTEST=1), else a fresh build of ./cmd/aigate
// into dir. built says whether it was built here.
func Binary(dir string) (path string, built bool, err error) {
	if p := os.Getenv(BinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", false, fmt.Errorf("$%s: %w", BinEnv, err)
		}
		return p, false, nil
	}
	if os.Getenv("AIGATE_VMTEST") == "1" {
		if _, err := os.Stat(VMBin); err != nil {
			return "", false, fmt.Errorf("in the VM but %s is missing: pass --bin bin/aigate to vmtest: %w", VMBin, err)
		}
		return VMBin, false, nil
	}
	p, err := Build(dir)
	return p, err == nil, err
}

// Build compiles ./cmd/aigate of this module into dir, as `make build`
// would (static, so the same file could go into the VM).
func Build(dir string) (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("build aigate: cannot locate the module")
	}
	root := filepath.Join(filepath.Dir(self), "..", "..")
	out := filepath.Join(dir, "aigate")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/aigate")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build aigate: %w\n%s", err, msg)
	}
	return out, nil
}

// CleanEnv is environ without what would make aigate act for another user
// or talk to the machine's agent and config: SUDO_*, HOME and AIGATE_*;
// and without GOCACHE and GOMODCACHE, which the Makefile exports for its
// own builds under sudo (root's caches): a user's run would not have them,
// and run would warn on every command that it keeps a go cache set by hand
// (internal/run/toolcache.go). A test of that warning sets them itself.
func CleanEnv(environ []string) []string {
	var env []string
	for _, kv := range environ {
		if strings.HasPrefix(kv, "SUDO_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "AIGATE_") ||
			strings.HasPrefix(kv, "GOCACHE=") || strings.HasPrefix(kv, "GOMODCACHE=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// RunBounded runs cmd and kills it when it has not ended within d. A
// process that outlives aigate holding its output pipes (the fanotify guard
// inherits stderr) is cut loose after WaitDelay, so a stuck run fails the
// test instead of stalling the package until go test's own timeout.
func RunBounded(cmd *exec.Cmd, d time.Duration) error {
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 5 * time.Second
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	return WaitBounded(cmd, d)
}

// WaitBounded is RunBounded for a cmd already started (set its WaitDelay
// before Start).
func WaitBounded(cmd *exec.Cmd, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	err := cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("killed after %v: %w", d, err)
	}
	return err
}

// ExitCode is the exit status in the error of cmd.Run or cmd.Wait: 0 for
// nil, an error when the process did not run or end normally.
func ExitCode(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return -1, err
	}
	return ee.ExitCode(), nil
}

// ExitCodeOf is ExitCode for a test: it fails tb when the process did not
// run or end normally.
func ExitCodeOf(tb testing.TB, err error) int {
	tb.Helper()
	code, err := ExitCode(err)
	if err != nil {
		tb.Fatalf("run aigate: %v", err)
	}
	return code
}

// SandboxesOf lists the sandbox cgroups (below the cgroup v2 mount's
// sandbox.DefaultParent) that the aigate process pid owns.
func SandboxesOf(pid int) ([]string, error) {
	root, err := cgroup.Mountpoint()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(root, sandbox.DefaultParent))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if _, owner, ok := sandbox.ParseName(e.Name()); ok && owner == pid {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// ProcessGone reports whether pid has exited (or is a zombie).
func ProcessGone(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(st)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

// ProcessesOf lists the live processes executing the file bin, e.g. an
// aigate run's fanotify guard that should have ended with it.
func ProcessesOf(bin string) []int {
	want, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return nil
	}
	dirs, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe"))
		if err != nil || exe != want || ProcessGone(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}
