//go:build linux

package fanotify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the program run inside sandboxes: with
// helperEnv set it performs one operation and prints "ok" or the errno name.
const helperEnv = "AIGATE_FANOTIFY_TEST_HELPER"

func init() {
	if op := os.Getenv(helperEnv); op != "" {
		fmt.Print(helperOp(op, os.Args[1:]))
		os.Exit(0)
	}
}

func errnoName(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return unix.ErrnoName(en)
	}
	return err.Error()
}

// helperOps are operations defined next to the tests that use them.
var helperOps = map[string]func(args []string) string{}

func registerHelper(name string, f func([]string) string) bool {
	// Two tests registering one name would silently run one's helper for
	// the other (BenchmarkOpen's openloop was replaced by readrace's).
	if _, dup := helperOps[name]; dup {
		panic("fanotify test helper " + name + " registered twice")
	}
	helperOps[name] = f
	return true
}

func helperOp(op string, args []string) string {
	if f, ok := helperOps[op]; ok {
		return f(args)
	}
	switch op {
	case "open": // open PATH r|w|a|trunc
		flags := map[string]int{"r": unix.O_RDONLY, "w": unix.O_WRONLY, "a": unix.O_WRONLY | unix.O_APPEND, "trunc": unix.O_RDONLY | unix.O_TRUNC, "rw": unix.O_RDWR}[args[1]]
		fd, err := unix.Open(args[0], flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return errnoName(err)
		}
		unix.Close(fd)
		return "ok"
	case "exec": // exec PATH
		err := exec.Command(args[0]).Run()
		if err != nil {
			return errnoName(err)
		}
		return "ok"
	case "subcg": // subcg NAME PATH: move into a new child cgroup, then open PATH
		cg, err := cgroup.ProcessCgroup(os.Getpid())
		if err != nil {
			return err.Error()
		}
		root, _ := cgroup.Mountpoint()
		dir := filepath.Join(root, cg, args[0])
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err.Error()
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return err.Error()
		}
		return helperOp("open", []string{args[1], "r"})
	case "sleep":
		time.Sleep(time.Hour)
	}
	return "unknown op " + op
}

// env is one test's world: a temporary home and project, a backend that
// walks only those, and helpers to make sandboxes.
type env struct {
	t       testing.TB
	home    string
	project string
	bin     string
	b       *Backend
	nextID  uint32
}

func newEnv(t testing.TB, tweak func(*Options)) *env {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	base := t.TempDir()
	e := &env{t: t, home: filepath.Join(base, "home"), project: filepath.Join(base, "home", "proj"), bin: filepath.Join(base, "bin"), nextID: 1}
	for _, d := range []string{e.home, e.project, e.bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := Options{Home: e.home, ProjectRoot: e.project, ExecDirs: []string{e.bin}, DecisionTimeout: 2 * time.Second}
	if tweak != nil {
		tweak(&opts)
	}
	b, err := Open(opts)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			testutil.SkipUnlessKernel(t, err.Error())
		}
		t.Fatal(err)
	}
	e.b = b
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
	})
	return e
}

// write creates a file (and its directories) below base.
func (e *env) write(path, content string) string {
	e.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// writeReported creates a file at path whose opens always reach the
// reader: it is written in a directory no mark covers and linked in, so
// its creation is no open in a marked directory, and with a second name
// it never gets an ignore mask (ignorenew.go). A file written in place
// may get one from its own creation's open (ignoreOutside), when the
// reader sets the mask only after the write: seen in CI under load.
func (e *env) writeReported(path, content string) string {
	e.t.Helper()
	other := filepath.Join(e.t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(other, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Link(other, path); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// ignoreMasked reports whether the file at path has an ignore mask in
// the backend's mark table: its opens do not reach the reader.
func (e *env) ignoreMasked(path string) bool {
	e.t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		e.t.Fatal(err)
	}
	e.b.marks.mu.Lock()
	defer e.b.marks.mu.Unlock()
	_, ok := e.b.marks.ignored[keyOf(&st)]
	return ok
}

type sbox struct {
	*enforce.Sandbox
	g *cgroup.Group
}

// ruleText is the rule an event's id points to in s's policy, as the
// agent names it: the backend reports only the id.
func ruleText(s *sbox, ev events.Event) string {
	if r, ok := s.Policy.Rule(policy.RuleID(ev.Rule)); ok {
		return r.Pattern
	}
	return ""
}

// sandbox creates a cgroup and registers it with policy p.
func (e *env) sandbox(p policy.Policy) *sbox {
	e.t.Helper()
	return e.sandboxUID(p, 0)
}

// sandboxUID is sandbox for a sandbox whose processes are uid's
// (enforce.Sandbox.UID; the helpers still run as root).
func (e *env) sandboxUID(p policy.Policy, uid uint32) *sbox {
	e.t.Helper()
	c, err := policy.Compile(&p, policy.Env{Home: e.home, ProjectRoot: e.project})
	if err != nil {
		e.t.Fatal(err)
	}
	id := e.nextID
	e.nextID++
	g, err := cgroup.Create("aigate-test", fmt.Sprintf("fan%d-%d-%d", os.Getpid(), id, time.Now().UnixNano()))
	if err != nil {
		e.t.Fatal(err)
	}
	sb := &enforce.Sandbox{ID: id, Name: fmt.Sprintf("sb%d", id), CgroupID: g.ID, CgroupPath: g.Path, Policy: c, Mode: c.Mode, UID: uid}
	if err := e.b.Add(context.Background(), sb); err != nil {
		_ = g.Remove()
		e.t.Fatal(err)
	}
	// The ignore masks are set in the background (ignoreLater): the
	// tests look at them, or at a walk that depends on them.
	e.b.ignoring.Wait()
	e.t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			e.t.Error(err)
		}
		_ = os.Remove(filepath.Dir(g.Path))
		if err := e.b.Remove(id); err != nil && !strings.Contains(err.Error(), "not registered") {
			e.t.Error(err)
		}
	})
	return &sbox{Sandbox: sb, g: g}
}

func rules(patterns ...string) []policy.PathRule {
	out := make([]policy.PathRule, len(patterns))
	for i, p := range patterns {
		out[i] = policy.PathRule{Pattern: p}
	}
	return out
}

// run performs op inside the sandbox (or outside with s == nil) and returns
// the helper's answer.
func (e *env) run(s *sbox, op string, args ...string) string {
	e.t.Helper()
	cmd := e.cmd(s, op, args...)
	out, err := output(cmd)
	if err != nil {
		e.t.Fatalf("helper %s %v: %v", op, args, err)
	}
	return string(out)
}

// output is cmd.Output started through forksafe.Start, as every child of
// the test process must be: the process answers its backend's permission
// events, and Go forks with vfork, so a garbage collection that begins
// while an exec waits for an answer (the helper binary lies in /tmp,
// marked for execs whenever a policy has deny_exec binaries) stops the
// reader for good. Under load that hung TestInlineDecisionsSkipStuckWorkers
// until the guard released the group, 20 s later, and killed the test
// process: 2 hangs in 29 runs (two loops at load ~20), the test goroutine
// "running" in the fork while the collector waited to stop the world.
func output(cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := forksafe.Start(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return out.Bytes(), err
}

func (e *env) cmd(s *sbox, op string, args ...string) *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+op)
	if s != nil {
		fd, err := s.g.OpenFD()
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { fd.Close() })
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	}
	return cmd
}

// event waits for the next event.
func (e *env) event() events.Event {
	e.t.Helper()
	select {
	case ev := <-e.b.Events():
		return ev
	case <-time.After(5 * time.Second):
		e.t.Fatal("no event within 5s")
	}
	return events.Event{}
}

// noEvent asserts that no event is pending.
func (e *env) noEvent() {
	e.t.Helper()
	select {
	case ev := <-e.b.Events():
		e.t.Fatalf("unexpected event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

func (e *env) count(k events.Kind, op events.Op, audit bool) uint64 {
	st, err := e.b.Stats()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range st.Violations {
		if c.Kind == k && c.Op == op && c.Audit == audit {
			return c.Value
		}
	}
	return 0
}

// openHere opens path from the test process itself: outside every sandbox.
func openHere(t *testing.T, path string, flags int) {
	t.Helper()
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s outside the sandbox: %v", path, err)
	}
	unix.Close(fd)
}
