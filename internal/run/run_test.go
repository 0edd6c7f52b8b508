//go:build linux

package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// runFakeBackend stands in for a kernel backend: it records its calls and
// can fail Add, or emit events once a process runs in a sandbox (as a real
// backend does: nothing in an empty cgroup can be denied anything).
type runFakeBackend struct {
	mu     sync.Mutex
	addErr error
	emit   []events.Event
	calls  []string
	nets   []policy.NetMode // each sandbox's net mode, as Add got it
	ch     chan events.Event
	closed bool
}

func newRunFake() *runFakeBackend { return &runFakeBackend{ch: make(chan events.Event, 16)} }

func (b *runFakeBackend) Name() string { return "fake" }
func (b *runFakeBackend) Add(_ context.Context, sb *enforce.Sandbox) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "add")
	b.nets = append(b.nets, sb.Policy.Net.Mode)
	if b.addErr != nil {
		return b.addErr
	}
	if len(b.emit) > 0 {
		go b.emitWhenPopulated(sb.CgroupPath, sb.CgroupID)
	}
	return nil
}

// emitWhenPopulated emits once the command runs in the sandbox: a process
// in the cgroup that is no longer the exec helper (this test binary),
// which the agent may move in while it creates the sandbox.
func (b *runFakeBackend) emitWhenPopulated(path string, cgid uint64) {
	self, _ := os.Executable()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			break
		}
		if slices.ContainsFunc(strings.Fields(string(data)), func(pid string) bool {
			exe, err := os.Readlink("/proc/" + pid + "/exe")
			return err == nil && exe != self
		}) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for _, e := range b.emit {
		e.CgroupID = cgid
		b.ch <- e
	}
}
func (b *runFakeBackend) Remove(uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "remove")
	return nil
}
func (b *runFakeBackend) Events() <-chan events.Event { return b.ch }
func (b *runFakeBackend) Stats() (enforce.Stats, error) {
	return enforce.Stats{}, errors.New("no counters")
}
func (b *runFakeBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "close")
	b.closed = true
	close(b.ch)
	return nil
}

// lockedBuffer is written by the command (through exec's copying
// goroutine) and by run's event printer at the same time.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type runEnv struct {
	f      *cmdutil.Factory
	out    *lockedBuffer
	home   string
	proj   string
	parent string
	socket string
}

// newRunEnv gives a test a home and a project directory, and a cmdutil.Factory
// working in them as root without sudo.
func newRunEnv(t *testing.T, euid int) *runEnv {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	proj := filepath.Join(home, "proj")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"HOME": home}
	out := &lockedBuffer{}
	f := &cmdutil.Factory{
		In:  strings.NewReader(""),
		Out: out,
		Err: out,
		Env: config.Env{
			Getenv: func(k string) string { return vars[k] },
			Euid:   euid,
			Getwd:  func() (string, error) { return proj, nil },
		},
		Now: time.Now,
		Log: zap.NewNop(),
	}
	return &runEnv{f: f, out: out, home: home, proj: proj, socket: filepath.Join(dir, "aigate.sock"),
		parent: testParent(t)}
}

// testParent names the test's parent cgroup: one directory under the
// cgroup root, so that requireCgroup's cleanup removes all of it. A
// subtest's name has a slash, which would make the parent two levels deep
// and leave the upper one behind, empty, after every run.
func testParent(t *testing.T) string {
	return fmt.Sprintf("aigate-test-run-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
}

// requireCgroup skips unless the test can create sandboxes, and removes
// the test's parent cgroup afterwards.
func (e *runEnv) requireCgroup(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	root, err := cgroup.Mountpoint()
	if err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	t.Cleanup(func() {
		if g, err := cgroup.Open(filepath.Join(root, e.parent)); err == nil {
			if err := g.Remove(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

// TestRunEnvCleanupInSubtest: a subtest's sandboxes leave nothing under
// the cgroup root once it ends (TestRunPolicyRecordsBadRefused's subtests
// left an empty aigate-test-run-PID-TestName each).
func TestRunEnvCleanupInSubtest(t *testing.T) {
	t.Run("sub", func(t *testing.T) {
		e := newRunEnv(t, 0)
		e.requireCgroup(t)
		if code, msg := e.run(t, &runOptions{Args: []string{"true"}}, newRunFake(), nil); code != cmdutil.ExitOK {
			t.Fatalf("exit %d: %s", code, msg)
		}
	})
	root, err := cgroup.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	left, err := filepath.Glob(filepath.Join(root, testParent(t)+"*"))
	if err != nil || len(left) > 0 {
		t.Errorf("cgroups left after the subtest: %v (%v)", left, err)
	}
	for _, p := range left { // this test leaves nothing either, even failing
		if g, err := cgroup.Open(p); err == nil {
			if err := g.Remove(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
}

func (e *runEnv) leftovers(t *testing.T) []string {
	root, _ := cgroup.Mountpoint()
	entries, _ := os.ReadDir(filepath.Join(root, e.parent))
	var dirs []string
	for _, d := range entries {
		if d.IsDir() {
			dirs = append(dirs, d.Name())
		}
	}
	return dirs
}

// runDeadline bounds every in-process run: a run that hangs (a child
// holding an output pipe, a session that never ends) fails its test with
// every goroutine's stack instead of stalling the package for go test's
// ten minutes.
const runDeadline = 90 * time.Second

// run runs `aigate run` in-process, as root with its own embedded agent on
// a socket of the test's (no metrics), with be as the backend.
func (e *runEnv) run(t *testing.T, opts *runOptions, be enforce.Backend, openErr error) (cmdutil.ExitCode, string) {
	t.Helper()
	opts.parent = e.parent
	if opts.Socket == "" {
		opts.Socket = e.socket
	}
	opts.openBackend = func(policy.BackendChoice, backend.Options) (enforce.Backend, error) {
		if openErr != nil {
			return nil, openErr
		}
		return be, nil
	}
	done := make(chan error, 1)
	go func() { done <- runRun(context.Background(), e.f, opts) }()
	select {
	case err := <-done:
		msg, code := cmdutil.Classify(err)
		return code, msg
	case <-time.After(runDeadline):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("aigate run %v did not finish within %v; output so far:\n%s\ngoroutines:\n%s", opts.Args, runDeadline, e.out.String(), buf)
		return 0, ""
	}
}

func TestRunAddFailureNeverStartsTheCommand(t *testing.T) {
	e := newRunEnv(t, 0)
	e.requireCgroup(t)
	marker := filepath.Join(e.proj, "started")
	be := newRunFake()
	be.addErr = errors.New("map update refused")
	code, msg := e.run(t, &runOptions{Args: []string{"sh", "-c", "touch " + marker}}, be, nil)
	if code != cmdutil.ExitSandbox {
		t.Fatalf("exit %d (%s), want %d", code, msg, cmdutil.ExitSandbox)
	}
	if !strings.Contains(msg, "refusing to run sh") || !strings.Contains(msg, "map update refused") {
		t.Fatalf("message does not say what failed: %q", msg)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the command ran although Add failed (%v)", err)
	}
	if l := e.leftovers(t); len(l) != 0 {
		t.Fatalf("cgroups left behind: %v", l)
	}
	if fmt.Sprint(be.calls) != "[add close]" {
		t.Fatalf("backend calls %v", be.calls)
	}
}

func TestRunNoBackendNeverStartsTheCommand(t *testing.T) {
	e := newRunEnv(t, 0)
	e.requireCgroup(t)
	marker := filepath.Join(e.proj, "started")
	code, msg := e.run(t, &runOptions{Args: []string{"sh", "-c", "touch " + marker}}, nil,
		fmt.Errorf("%w: BPF LSM: not active; fanotify: EPERM", backend.ErrUnavailable))
	if code != cmdutil.ExitNoEnforcement || !strings.Contains(msg, "without enforcement") {
		t.Fatalf("exit %d (%s), want %d", code, msg, cmdutil.ExitNoEnforcement)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the command ran without enforcement (%v)", err)
	}
}

func TestRunRefusals(t *testing.T) {
	t.Run("not root", func(t *testing.T) {
		e := newRunEnv(t, 1000)
		code, msg := e.run(t, &runOptions{Args: []string{"true"}}, newRunFake(), nil)
		if code != cmdutil.ExitNoEnforcement || !strings.Contains(msg, "sudo") {
			t.Fatalf("exit %d (%s)", code, msg)
		}
	})
	t.Run("invalid policy", func(t *testing.T) {
		e := newRunEnv(t, 0)
		if err := os.WriteFile(filepath.Join(e.proj, ".aigate.yaml"), []byte("deny_read: [\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, msg := e.run(t, &runOptions{Args: []string{"true"}}, newRunFake(), nil)
		if code != cmdutil.ExitPolicy || !strings.Contains(msg, ".aigate.yaml") {
			t.Fatalf("exit %d (%s), want %d naming the file", code, msg, cmdutil.ExitPolicy)
		}
	})
	t.Run("command not found", func(t *testing.T) {
		e := newRunEnv(t, 0)
		code, msg := e.run(t, &runOptions{Args: []string{"no-such-tool-aigate"}}, newRunFake(), nil)
		if code != cmdutil.ExitNotFound || !strings.Contains(msg, "no-such-tool-aigate") {
			t.Fatalf("exit %d (%s)", code, msg)
		}
	})
	t.Run("bad backend", func(t *testing.T) {
		e := newRunEnv(t, 0)
		code, _ := e.run(t, &runOptions{Backend: "ebpf", Args: []string{"true"}}, newRunFake(), nil)
		if code != cmdutil.ExitUsage {
			t.Fatalf("exit %d, want %d", code, cmdutil.ExitUsage)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		e := newRunEnv(t, 0)
		code, _ := e.run(t, &runOptions{User: "no-such-user-aigate", Args: []string{"true"}}, newRunFake(), nil)
		if code != cmdutil.ExitUsage {
			t.Fatalf("exit %d, want %d", code, cmdutil.ExitUsage)
		}
	})
}

func TestRunExitCodeEventsAndCleanup(t *testing.T) {
	e := newRunEnv(t, 0)
	e.requireCgroup(t)
	be := newRunFake()
	be.emit = []events.Event{
		{Kind: events.KindFile, Op: events.OpRead, Path: "/p/.env", Comm: "cat", TGID: 42, Rule: 1},
		{Kind: events.KindExec, Op: events.OpExec, Path: "/usr/bin/curl", Comm: "sh", TGID: 43},
	}
	jsonl := filepath.Join(e.proj, "events.jsonl")
	pidFile := filepath.Join(e.proj, "bg.pid")
	// The command leaves a background child behind and exits 7.
	code, msg := e.run(t, &runOptions{EventsFile: jsonl,
		Args: []string{"sh", "-c", "sleep 600 & echo $! > " + pidFile + "; exit 7"}}, be, nil)
	if code != 7 || msg != "" {
		t.Fatalf("exit %d (%q), want the command's 7", code, msg)
	}
	out := e.out.String()
	for _, want := range []string{
		"aigate: blocked read /p/.env (cat, pid 42, rule ",
		"aigate: blocked exec /usr/bin/curl (sh, pid 43)\n",
		"aigate: 2 operations blocked (1 read, 1 exec)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	data, err := os.ReadFile(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("events file has %d lines:\n%s", len(lines), data)
	}
	var ev events.Event
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Sandbox == "" || ev.Backend != "fake" || ev.RuleText == "" || ev.CgroupID == 0 {
		t.Fatalf("event not completed: %+v", ev)
	}
	if fi, _ := os.Stat(jsonl); fi.Mode().Perm() != 0o600 {
		t.Fatalf("events file mode %v", fi.Mode())
	}
	pidData, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + strings.TrimSpace(string(pidData))); err == nil {
		if st, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(pidData)) + "/stat"); !strings.Contains(string(st), ") Z ") {
			t.Fatalf("background child %s survived the run", pidData)
		}
	}
	if l := e.leftovers(t); len(l) != 0 {
		t.Fatalf("cgroups left behind: %v", l)
	}
	if fmt.Sprint(be.calls) != "[add remove close]" {
		t.Fatalf("backend calls %v", be.calls)
	}
}

func TestRunQuiet(t *testing.T) {
	e := newRunEnv(t, 0)
	e.requireCgroup(t)
	be := newRunFake()
	be.emit = []events.Event{{Kind: events.KindFile, Op: events.OpRead, Path: "/p/.env", Comm: "cat"}}
	code, _ := e.run(t, &runOptions{Quiet: true, Args: []string{"true"}}, be, nil)
	if code != 0 || strings.Contains(e.out.String(), "blocked") {
		t.Fatalf("exit %d, output %q", code, e.out.String())
	}
}

func TestCommandEnv(t *testing.T) {
	env := []string{"PATH=/bin", "HOME=/root", "USER=root", "LOGNAME=root", "TERM=xterm"}
	self := &identity{name: "root", home: "/root"}
	if got := commandEnv(env, self); fmt.Sprint(got) != fmt.Sprint(env) {
		t.Fatalf("own identity changed the environment: %v", got)
	}
	u := &identity{name: "u", home: "/home/u", cred: &syscall.Credential{Uid: 1000}}
	got := strings.Join(commandEnv(env, u), " ")
	if want := "PATH=/bin TERM=xterm HOME=/home/u USER=u LOGNAME=u"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
