//go:build linux

package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil/testcgroup"
)

// fakeBackend records the order of calls and what the cgroup held when Add
// ran.
type fakeBackend struct {
	mu        sync.Mutex
	addErr    error
	calls     []string
	pidsAtAdd []int
	added     map[uint32]*enforce.Sandbox
}

func (f *fakeBackend) Name() string { return "fake" }

func (f *fakeBackend) Add(_ context.Context, sb *enforce.Sandbox) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "add")
	g, err := cgroup.Open(sb.CgroupPath)
	if err != nil {
		return err
	}
	f.pidsAtAdd, _ = g.PIDs()
	if f.addErr != nil {
		return f.addErr
	}
	if f.added == nil {
		f.added = make(map[uint32]*enforce.Sandbox)
	}
	f.added[sb.ID] = sb
	return nil
}

func (f *fakeBackend) Remove(id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "remove")
	if _, ok := f.added[id]; !ok {
		return fmt.Errorf("sandbox %d not added", id)
	}
	delete(f.added, id)
	return nil
}

func (f *fakeBackend) Events() <-chan events.Event   { return nil }
func (f *fakeBackend) Stats() (enforce.Stats, error) { return enforce.Stats{}, nil }
func (f *fakeBackend) Close() error                  { return nil }

// testParent returns a private parent cgroup for the test and removes it
// (with anything left in it) afterwards.
func testParent(t *testing.T) (parent, dir string) {
	t.Helper()
	return testcgroup.Parent(t, "aigate-test-sandbox")
}

func testPolicy() *policy.Compiled {
	return &policy.Compiled{Mode: policy.ModeEnforce}
}

func create(t *testing.T, cfg Config) *Sandbox {
	t.Helper()
	sb, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

func TestStartInsideAfterAdd(t *testing.T) {
	parent, _ := testParent(t)
	fb := &fakeBackend{}
	sb := create(t, Config{Backend: fb, Policy: testPolicy(), Parent: parent})
	if len(fb.calls) != 1 || fb.calls[0] != "add" || len(fb.pidsAtAdd) != 0 {
		t.Fatalf("at Add: calls %v, processes in cgroup %v", fb.calls, fb.pidsAtAdd)
	}
	if sb.Info.ID != 1 || sb.Info.Name != Name(1, os.Getpid()) || sb.Info.Mode != policy.ModeEnforce {
		t.Fatalf("sandbox info %+v", sb.Info)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(sb.Path(), &st); err != nil || st.Ino != sb.Info.CgroupID {
		t.Fatalf("cgroup id %d is not the inode of %s (%v)", sb.Info.CgroupID, sb.Path(), err)
	}

	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", "cat /proc/self/cgroup; grep NoNewPrivs /proc/self/status")
	cmd.Stdout = &out
	c, err := sb.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	code, err := c.Wait()
	if err != nil || code != 0 {
		t.Fatalf("exit %d, %v; output %s", code, err, out.String())
	}
	root, _ := cgroup.Mountpoint()
	if want := "0::" + strings.TrimPrefix(sb.Path(), root) + "\n"; !strings.Contains(out.String(), want) {
		t.Fatalf("child did not run in the sandbox: want %q in\n%s", want, out.String())
	}
	if !strings.Contains(out.String(), "NoNewPrivs:\t1") {
		t.Fatalf("child runs without no_new_privs:\n%s", out.String())
	}
	// No thread of this process that may run other goroutines has
	// no_new_privs: the forking thread has exited, or, if it was the main
	// thread, the runtime parked it for good (it cannot exit on Linux).
	// The thread exits just after Wait returns, so allow it a moment.
	var kept []string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		kept = kept[:0]
		tasks, _ := filepath.Glob("/proc/self/task/*/status")
		for _, f := range tasks {
			data, _ := os.ReadFile(f)
			tid := filepath.Base(filepath.Dir(f))
			if strings.Contains(string(data), "NoNewPrivs:\t1") && tid != strconv.Itoa(os.Getpid()) {
				kept = append(kept, tid)
			}
		}
		if len(kept) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(kept) > 0 {
		t.Errorf("threads %v kept no_new_privs", kept)
	}
	if _, err := sb.Start(exec.Command("true")); err == nil {
		t.Fatal("second Start succeeded")
	}
}

func TestAddFailureLeavesNothing(t *testing.T) {
	parent, dir := testParent(t)
	fb := &fakeBackend{addErr: errors.New("map full")}
	sb, err := Create(context.Background(), Config{Backend: fb, Policy: testPolicy(), Parent: parent})
	if err == nil {
		sb.Close()
		t.Fatal("Create succeeded although Add failed")
	}
	if !strings.Contains(err.Error(), "map full") || !strings.Contains(err.Error(), "fake backend") {
		t.Fatalf("error does not say what failed: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			t.Fatalf("cgroup %s left behind", e.Name())
		}
	}
}

func TestExitCodes(t *testing.T) {
	parent, _ := testParent(t)
	tests := []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 7", 7},
		{"kill -TERM $$", 128 + int(syscall.SIGTERM)},
		{"kill -KILL $$", 128 + int(syscall.SIGKILL)},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			sb := create(t, Config{Backend: &fakeBackend{}, Policy: testPolicy(), Parent: parent})
			c, err := sb.Start(exec.Command("sh", "-c", tt.script))
			if err != nil {
				t.Fatal(err)
			}
			if code, err := c.Wait(); err != nil || code != tt.want {
				t.Fatalf("exit code %d (%v), want %d", code, err, tt.want)
			}
		})
	}
}

func TestStartFailure(t *testing.T) {
	parent, _ := testParent(t)
	sb := create(t, Config{Backend: &fakeBackend{}, Policy: testPolicy(), Parent: parent})
	_, err := sb.Start(exec.Command("/nonexistent/tool"))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/tool") {
		t.Fatalf("Start of a missing binary: %v", err)
	}
}

func TestSignal(t *testing.T) {
	parent, _ := testParent(t)
	sb := create(t, Config{Backend: &fakeBackend{}, Policy: testPolicy(), Parent: parent})
	marker := filepath.Join(t.TempDir(), "got-term")
	ready := filepath.Join(t.TempDir(), "ready")
	script := fmt.Sprintf(`trap 'echo term > %s; exit 3' TERM; touch %s; while :; do sleep 0.05; done`, marker, ready)
	c, err := sb.Start(exec.Command("sh", "-c", script))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ready)
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := c.Wait(); err != nil || code != 3 {
		t.Fatalf("exit %d (%v), want 3 from the trap", code, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("trap did not run: %v", err)
	}
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signalling an exited child: %v", err)
	}
}

func TestCloseKillsLeftovers(t *testing.T) {
	parent, _ := testParent(t)
	fb := &fakeBackend{}
	sb := create(t, Config{Backend: fb, Policy: testPolicy(), Parent: parent})
	pidFile := filepath.Join(t.TempDir(), "pid")
	c, err := sb.Start(exec.Command("sh", "-c", "sleep 600 & echo $! > "+pidFile))
	if err != nil {
		t.Fatal(err)
	}
	if code, err := c.Wait(); code != 0 || err != nil {
		t.Fatalf("exit %d, %v", code, err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	bg, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pids, _ := sb.PIDs(); !slices.Contains(pids, bg) {
		t.Fatalf("background child %d not in sandbox (%v)", bg, pids)
	}
	path := sb.Path()
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if pidAlive(bg) {
		t.Fatalf("background child %d survived Close", bg)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("cgroup %s still exists (%v)", path, err)
	}
	if fmt.Sprint(fb.calls) != "[add remove]" {
		t.Fatalf("backend calls %v", fb.calls)
	}
	if err := sb.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := sb.Start(exec.Command("true")); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

// TestSweepAndAllocate leaves a sandbox as a crashed run would, with a
// process still in it, next to a live one, and checks that the next sandbox
// removes the stale one and skips the live one's ID.
func TestSweepAndAllocate(t *testing.T) {
	parent, dir := testParent(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := dead.Process.Pid
	if pidAlive(deadPid) {
		// skip-ok: the kernel handed the dead pid out again; the next run checks.
		t.Skip("pid reused already")
	}
	live := create(t, Config{Backend: &fakeBackend{}, Policy: testPolicy(), Parent: parent})
	if live.Info.ID != 1 {
		t.Fatalf("first ID %d", live.Info.ID)
	}
	stale, err := cgroup.Create(parent, Name(2, deadPid))
	if err != nil {
		t.Fatal(err)
	}
	_, reaped := testcgroup.StartIn(t, stale, "sleep", "600")

	sb := create(t, Config{Backend: &fakeBackend{}, Policy: testPolicy(), Parent: parent})
	if sb.Info.ID != 2 {
		t.Fatalf("ID %d, want 2 (1 is live, 2 was stale)", sb.Info.ID)
	}
	if len(sb.Warnings) != 1 || !strings.Contains(sb.Warnings[0], Name(2, deadPid)) || !strings.Contains(sb.Warnings[0], "killed 1 leftover") {
		t.Fatalf("warnings %q", sb.Warnings)
	}
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Fatal("orphan in the stale sandbox was not killed")
	}
	if _, err := os.Stat(filepath.Join(dir, Name(2, deadPid))); !os.IsNotExist(err) {
		t.Fatalf("stale cgroup still there: %v", err)
	}
	if _, err := os.Stat(live.Path()); err != nil {
		t.Fatalf("live sandbox was swept: %v", err)
	}
}

func TestLimits(t *testing.T) {
	parent, _ := testParent(t)
	root, _ := cgroup.Mountpoint()
	avail, err := controllers(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	p := testPolicy()
	p.Limits = policy.ResourceLimits{MaxMemory: 1 << 30, MaxPIDs: 64, MaxCPUPercent: 150}
	sb := create(t, Config{Backend: &fakeBackend{}, Policy: p, Parent: parent})
	want := map[string]string{"memory": "1073741824", "pids": "64", "cpu": "150000 100000"}
	files := map[string]string{"memory": "memory.max", "pids": "pids.max", "cpu": "cpu.max"}
	for ctl, val := range want {
		if slices.Contains(avail, ctl) {
			got, err := os.ReadFile(filepath.Join(sb.Path(), files[ctl]))
			if err != nil || strings.TrimSpace(string(got)) != val {
				t.Errorf("%s = %q (%v), want %q", files[ctl], got, err, val)
			}
			continue
		}
		// One warning says it for every missing controller.
		if len(sb.Warnings) != 1 || !strings.Contains(sb.Warnings[0], ctl) || !strings.Contains(sb.Warnings[0], files[ctl]+"="+val) {
			t.Errorf("want one warning naming the missing %s controller and %s=%s: %q", ctl, files[ctl], val, sb.Warnings)
		}
	}
	// if_unavailable: refuse turns the warning into a refusal, leaving nothing.
	if len(sb.Warnings) > 0 {
		p.Limits.Required = true
		_, err := Create(context.Background(), Config{Backend: &fakeBackend{}, Policy: p, Parent: parent})
		if err == nil || !strings.Contains(err.Error(), "if_unavailable is refuse") {
			t.Errorf("required limits that cannot apply: %v, want a refusal", err)
		}
		entries, _ := os.ReadDir(filepath.Join(root, parent))
		var dirs []string
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, e.Name())
			}
		}
		if len(dirs) != 1 { // the first sandbox only
			t.Errorf("a refused sandbox left cgroups: %v", dirs)
		}
	}
}

func TestParseName(t *testing.T) {
	for _, tt := range []struct {
		in    string
		id    uint32
		owner int
		ok    bool
	}{
		{"s1-p42", 1, 42, true},
		{"s4294967295-p1", 4294967295, 1, true},
		{"s0-p42", 0, 0, false},
		{"s1-p0", 0, 0, false},
		{"s01-p42", 0, 0, false},
		{"s1-p42x", 0, 0, false},
		{"x1-p42", 0, 0, false},
		{"s1p42", 0, 0, false},
	} {
		id, owner, ok := ParseName(tt.in)
		if id != tt.id || owner != tt.owner || ok != tt.ok {
			t.Errorf("ParseName(%q) = %d, %d, %v", tt.in, id, owner, ok)
		}
	}
}

func waitFor(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
}

// TestWaitWithPipeHeldByBackground: a background process that keeps the
// output pipe open must not keep Wait (and so cleanup) from returning.
func TestWaitWithPipeHeldByBackground(t *testing.T) {
	parent, _ := testParent(t)
	sb := create(t, Config{Backend: &fakeBackend{}, Policy: testPolicy(), Parent: parent})
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", "sleep 600 & echo started; exit 4")
	cmd.Stdout = &out
	c, err := sb.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() { code, _ := c.Wait(); done <- code }()
	select {
	case code := <-done:
		if code != 4 || out.String() != "started\n" {
			t.Fatalf("exit %d, output %q", code, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait blocked on the pipe held by a background process")
	}
}

// Left says a dead owner's pins are still needed while a sandbox cgroup
// of its is there, and not once it is gone; a live owner always counts.
func TestLeft(t *testing.T) {
	parent, _ := testParent(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := dead.Process.Pid
	if pidAlive(deadPid) {
		// skip-ok: the kernel handed the dead pid out again; the next run checks.
		t.Skip("pid reused already")
	}
	if !Left(parent, os.Getpid()) {
		t.Error("a live owner is not Left")
	}
	if Left(parent, deadPid) {
		t.Error("a dead owner without sandboxes is Left")
	}
	stale, err := cgroup.Create(parent, Name(7, deadPid))
	if err != nil {
		t.Fatal(err)
	}
	if !Left(parent, deadPid) {
		t.Error("a dead owner whose sandbox cgroup is still there is not Left")
	}
	if err := stale.Remove(); err != nil {
		t.Fatal(err)
	}
	if Left(parent, deadPid) {
		t.Error("a dead owner is Left after its sandbox cgroup went")
	}
}
