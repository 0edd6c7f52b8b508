//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// limitEnv makes the test binary a process that tries to exceed a limit:
// "alloc MIB" touches that much memory, "fork N" starts N sleeps, "spin
// SECONDS" burns CPU and prints the CPU time it got.
const limitEnv = "AIGATE_SANDBOX_TEST_LIMIT"

func init() {
	testutil.HelperOps(limitEnv, func(args []string) string {
		n, _ := strconv.Atoi(args[1])
		switch args[0] {
		case "alloc":
			var keep [][]byte
			for range n {
				b := make([]byte, 1<<20)
				for i := range b {
					b[i] = 1
				}
				keep = append(keep, b)
			}
			return fmt.Sprintf("allocated %d", len(keep))
		case "fork":
			started := 0
			var firstErr error
			for range n {
				c := exec.Command("sleep", "5")
				if err := c.Start(); err != nil {
					firstErr = err
					break
				}
				started++
			}
			return fmt.Sprintf("started %d err %v", started, firstErr)
		case "spin":
			end := time.Now().Add(time.Duration(n) * time.Second)
			for time.Now().Before(end) {
			}
			var ru syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			return fmt.Sprintf("cpu %d", time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Milliseconds())
		}
		return "unknown op " + args[0]
	})
}

// requireV2Controllers skips unless cgroup v2 owns memory, pids and cpu:
// on our hosts they are bound to cgroup v1, so the test runs in the VM
// (where AIGATE_REQUIRE_LSM=1 makes a skip fail).
func requireV2Controllers(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	root, err := cgroup.Mountpoint()
	if err != nil {
		testutil.SkipUnlessKernel(t, "no cgroup v2: "+err.Error())
	}
	avail, err := controllers(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		if !slices.Contains(avail, c) {
			testutil.SkipUnlessLSM(t, "cgroup v2 has no "+c+" controller here (bound to cgroup v1); runs in the VM")
		}
	}
}

// runLimited runs the helper op in a new sandbox with limits and returns
// its output, exit code and the sandbox's cgroup path.
func runLimited(t *testing.T, l policy.ResourceLimits, op string) (string, int, string) {
	t.Helper()
	parent, _ := testParent(t)
	p := testPolicy()
	p.Limits = l
	sb := create(t, Config{Backend: &fakeBackend{}, Policy: p, Parent: parent})
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), limitEnv+"="+op)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	c, err := sb.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := c.Wait()
	return out.String(), code, sb.Path()
}

func cgroupFile(t *testing.T, dir, name, key string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("%s has no %s: %q", name, key, data)
	return 0
}

// TestLimitMemoryOOMInside: a process that allocates past max_memory is
// OOM-killed inside its sandbox; the test process outside goes on.
func TestLimitMemoryOOMInside(t *testing.T) {
	requireV2Controllers(t)
	out, code, dir := runLimited(t, policy.ResourceLimits{MaxMemory: 64 << 20}, "alloc 512")
	if code == 0 || strings.Contains(out, "allocated") {
		t.Fatalf("512 MiB allocated under a 64 MiB limit: exit %d, %q", code, out)
	}
	if n := cgroupFile(t, dir, "memory.events", "oom_kill"); n < 1 {
		t.Errorf("memory.events oom_kill = %d, want the sandbox's process killed", n)
	}
	// Control: the same allocation outside the sandbox succeeds.
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), limitEnv+"=alloc 128")
	if got, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(got), "allocated 128") {
		t.Errorf("outside the sandbox, 128 MiB: %q, %v", got, err)
	}
}

// TestLimitPIDsForkFails: past max_pids, fork fails with EAGAIN.
func TestLimitPIDsForkFails(t *testing.T) {
	requireV2Controllers(t)
	out, _, _ := runLimited(t, policy.ResourceLimits{MaxPIDs: 24}, "fork 64")
	var started int
	var rest string
	if _, err := fmt.Sscanf(out, "started %d err %s", &started, &rest); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	if started >= 24 || !strings.Contains(out, "resource temporarily unavailable") {
		t.Fatalf("want fork to fail with EAGAIN before 24 tasks: %q", out)
	}
	t.Logf("under max_pids 24: %d sleeps started, then %q", started, rest)
}

// TestLimitCPUShare: a busy loop under max_cpu_percent 20 gets at most
// about a fifth of a CPU and is throttled.
func TestLimitCPUShare(t *testing.T) {
	requireV2Controllers(t)
	const secs = 3
	out, code, dir := runLimited(t, policy.ResourceLimits{MaxCPUPercent: 20}, "spin "+strconv.Itoa(secs))
	var ms int
	if _, err := fmt.Sscanf(out, "cpu %d", &ms); err != nil || code != 0 {
		t.Fatalf("helper: exit %d, output %q: %v", code, out, err)
	}
	share := float64(ms) / (secs * 1000)
	t.Logf("CPU share under max_cpu_percent 20: %.0f%%", share*100)
	// The Go runtime's other threads count too; 30% leaves room for them.
	if share > 0.30 {
		t.Errorf("the busy loop got %.0f%% of a CPU under a 20%% limit", share*100)
	}
	if n := cgroupFile(t, dir, "cpu.stat", "nr_throttled"); n < 1 {
		t.Errorf("cpu.stat nr_throttled = %d, want throttling", n)
	}
}
