//go:build linux

package lsm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// helperEnv makes the test binary act as a tiny program run inside a
// sandbox: "open PATH r|w|t" or "exec PATH [ARGS]". It exits 0 on success,
// exitEPERM when the kernel answered EPERM and 2 on any other error.
const (
	helperEnv = "AIGATE_LOADER_HELPER"
	exitEPERM = 13
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helper(os.Args[1:]))
	}
	code := m.Run()
	if shared.b != nil {
		if err := shared.b.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the shared LSM backend:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func helper(args []string) int {
	var err error
	switch args[0] {
	case "open":
		flags := unix.O_RDONLY
		switch args[2] {
		case "w":
			flags = unix.O_WRONLY
		case "t":
			flags = unix.O_RDONLY | unix.O_TRUNC
		}
		var fd int
		fd, err = unix.Open(args[1], flags|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
	case "exec":
		err = unix.Exec(args[1], args[1:], os.Environ())
	case "rename":
		err = unix.Rename(args[1], args[2])
	case "link":
		err = unix.Link(args[1], args[2])
	case "unlink":
		err = unix.Unlink(args[1])
	case "rmdir":
		err = unix.Rmdir(args[1])
	case "truncate":
		err = unix.Truncate(args[1], 0)
	case "chmod":
		err = unix.Chmod(args[1], 0o600)
	case "chown":
		err = unix.Chown(args[1], 0, 0)
	case "fdconnect", "fdsend", "ownsend":
		err = foreignSocketOp(args[0], args[1])
	case "unixconnect", "unixsend", "unixself":
		err = lsmUnixOp(args[0], args[1])
	case "socket":
		// socket FAMILY TYPE PROTO
		var a [3]int
		for i := range a {
			a[i], _ = strconv.Atoi(args[1+i])
		}
		var fd int
		if fd, err = unix.Socket(a[0], a[1], a[2]); err == nil {
			unix.Close(fd)
		}
	case "bench": // bench N PATH: print the median batch's ns per open+close
		n, _ := strconv.Atoi(args[1])
		ns, err := bench.Batched(n, func() error {
			fd, err := unix.Open(args[2], unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Println(strconv.FormatFloat(ns, 'f', 1, 64))
	case "execserve": // execserve PATH: for each line N on stdin, the median batch's ns per fork+exec+wait of PATH
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			n, _ := strconv.Atoi(in.Text())
			ns, err := bench.Batched(n, func() error { return forkExecWait(args[1]) })
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			fmt.Println(strconv.FormatFloat(ns, 'f', 1, 64))
		}
		return 0
	case "benchserve": // benchserve PATH: for each line N on stdin, bench N PATH
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if code := helper([]string{"bench", in.Text(), args[1]}); code != 0 {
				return code
			}
		}
		return 0
	case "ptrace", "environ", "mem", "cont", "vmread", "getfd", "child", "traceme":
		err = procHelper(args)
	case "userns":
		err = usernsHelper()
	case "ownpty":
		err = ownPty()
	case "mkdir", "symlink", "mkfifo", "opendeep":
		err = pathHelper(args)
	case "mmapexec", "mprotectexec", "mmapread", "mmapanon", "mmapserve":
		err = mmapHelper(args)
	case "mkcg":
		// Create a cgroup below our own, move there, then open.
		cg, _ := cgroup.ProcessCgroup(os.Getpid())
		root, _ := cgroup.Mountpoint()
		dir := filepath.Join(root, cg, "child")
		if err = os.Mkdir(dir, 0o755); err == nil {
			err = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
		}
		if err == nil {
			return helper(args[1:])
		}
	}
	if errors.Is(err, unix.EPERM) {
		return exitEPERM
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// shared is the backend most tests use: loading and verifying the
// programs takes 15-20 s under TCG (the guests), and a backend of its own
// per test cost a guest run about 9 minutes. Tests run one at a time;
// each adds sandboxes of its own, removes them when done and starts from
// an empty event stream (openLSM drains it). TestMain closes it.
var shared struct {
	once sync.Once
	b    *Backend
	err  error
}

// openLSM skips (or fails under AIGATE_REQUIRE_LSM=1) unless BPF LSM works.
// Without execDirs it returns the shared backend; with them (the exec
// rules resolve names there when a sandbox is added), and to a benchmark
// (which detaches and attaches programs), one of the caller's own.
func openLSM(t testing.TB, execDirs ...string) *Backend {
	t.Helper()
	testutil.RequireRoot(t)
	if err := loader.ProbeLSM(); err != nil {
		testutil.SkipUnlessLSM(t, err.Error())
	}
	if _, bench := t.(*testing.B); execDirs != nil || bench {
		if execDirs == nil {
			execDirs = []string{}
		}
		return openOwnLSM(t, Options{ExecDirs: execDirs})
	}
	shared.once.Do(func() { shared.b, shared.err = Open(Options{ExecDirs: []string{}}) })
	if shared.err != nil {
		t.Fatalf("OpenLSM: %v", shared.err)
	}
	drainEvents(t, shared.b)
	return shared.b
}

// openOwnLSM opens a backend for this test alone, closed when it ends.
func openOwnLSM(t testing.TB, opts Options) *Backend {
	t.Helper()
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("OpenLSM: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// drainEvents discards what earlier tests left in l's event stream (a
// denial reported after its test ended), so that a test's nextEvent and
// noEvent see only its own.
func drainEvents(t testing.TB, l *Backend) {
	t.Helper()
	if _, err := l.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for {
		select {
		case <-l.Events():
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

// violationCounts sums l's counters of op, enforced and audited, for a test that
// compares them before and after (the shared backend counts every test's).
func violationCounts(t *testing.T, l *Backend, op events.Op) (enforced, audited uint64) {
	t.Helper()
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Violations {
		if c.Op != op {
			continue
		}
		if c.Audit {
			audited += c.Value
		} else {
			enforced += c.Value
		}
	}
	return enforced, audited
}

type sandbox struct {
	id uint32
	g  *cgroup.Group
	fd *os.File
}

var nextID uint32 = 1

// addSandbox creates a cgroup and enters it into l with policy p.
func addSandbox(t testing.TB, l *Backend, p *policy.Compiled, mode policy.Mode) *sandbox {
	t.Helper()
	id := nextID
	nextID++
	g, err := cgroup.Create("aigate-loader-test", fmt.Sprintf("sb-%d-%d", os.Getpid(), id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
		_ = os.Remove(filepath.Dir(g.Path)) // fails while other tests use it
	})
	sb := &enforce.Sandbox{ID: id, Name: fmt.Sprintf("test-%d", id), CgroupID: g.ID, CgroupPath: g.Path, Policy: p, Mode: mode}
	if err := l.Add(context.Background(), sb); err != nil {
		t.Fatalf("Add: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Remove(id); err != nil {
			t.Error(err)
		}
	})
	fd, err := g.OpenFD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	return &sandbox{id: id, g: g, fd: fd}
}

// run runs the helper with args inside sb (outside any sandbox when sb is
// nil) and returns its exit code and pid.
func run(t testing.TB, sb *sandbox, args ...string) (int, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	// No preemption signals: a helper that asked to be traced stops on any.
	cmd.Env = append(os.Environ(), helperEnv+"=1", "GODEBUG=asyncpreemptoff=1")
	cmd.Stderr = os.Stderr
	if sb != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(sb.fd.Fd())}
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), cmd.Process.Pid
	}
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return 0, cmd.Process.Pid
}

// nextEvent waits for the next event.
func nextEvent(t *testing.T, l *Backend) events.Event {
	t.Helper()
	select {
	case ev := <-l.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return events.Event{}
}

// noEvent asserts that no event is pending.
func noEvent(t *testing.T, l *Backend) {
	t.Helper()
	select {
	case ev := <-l.Events():
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

// tempDir is t.TempDir with symlinks resolved, as d_path reports it.
func tempDir(t *testing.T) string {
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func touch(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// compiled builds a policy with one rule per entry, ids in order.
type ruleSpec struct {
	access policy.Access
	kind   string // paths, names, prefix, suffix
	value  string
}

func compiled(specs ...ruleSpec) *policy.Compiled {
	c := &policy.Compiled{Mode: policy.ModeEnforce}
	for i, s := range specs {
		id := policy.RuleID(i + 1)
		c.Rules = append(c.Rules, policy.Rule{ID: id, Access: s.access, Pattern: s.kind + ":" + s.value})
		var fs *policy.FileSet
		switch s.access {
		case policy.AccessRead:
			fs = &c.Read
		case policy.AccessWrite:
			fs = &c.Write
		case policy.AccessExec:
			fs = &c.Exec
		}
		e := policy.Entry{Value: s.value, Rule: id}
		switch s.kind {
		case "paths":
			fs.Paths = append(fs.Paths, e)
		case "names":
			fs.Names = append(fs.Names, e)
		case "prefix":
			fs.NamePrefix = append(fs.NamePrefix, e)
		case "suffix":
			fs.NameSuffix = append(fs.NameSuffix, e)
		}
	}
	return c
}

func TestLSMFileRules(t *testing.T) {
	l := openLSM(t)
	dir := tempDir(t)
	p := compiled(
		ruleSpec{policy.AccessRead, "paths", dir + "/secret.txt"}, // 1
		ruleSpec{policy.AccessRead, "paths", dir + "/vault"},      // 2
		ruleSpec{policy.AccessRead, "names", ".ssh"},              // 3
		ruleSpec{policy.AccessRead, "prefix", "id_rsa"},           // 4
		ruleSpec{policy.AccessRead, "suffix", ".pem"},             // 5
		ruleSpec{policy.AccessWrite, "paths", dir + "/ro"},        // 6
		ruleSpec{policy.AccessRead, "names", ".env"},              // 7
	)
	sb := addSandbox(t, l, p, policy.ModeEnforce)

	for _, tc := range []struct {
		path string
		mode string
		rule uint32 // 0: allowed
		op   events.Op
	}{
		{touch(t, dir+"/secret.txt"), "r", 1, events.OpRead},
		{touch(t, dir+"/secret.txt.bak"), "r", 0, ""},
		{touch(t, dir+"/vault/a/b/key"), "r", 2, events.OpRead},
		{touch(t, dir+"/vaulty"), "r", 0, ""},
		{touch(t, dir+"/home/u/.ssh/config"), "r", 3, events.OpRead},
		{touch(t, dir+"/x/.ssh/deep/er/file"), "r", 3, events.OpRead},
		{touch(t, dir+"/x/.sshx/file"), "r", 0, ""},
		{touch(t, dir+"/keys/id_rsa.pub"), "r", 4, events.OpRead},
		{touch(t, dir+"/keys/my_id_rsa"), "r", 0, ""},
		{touch(t, dir+"/certs/server.pem"), "r", 5, events.OpRead},
		{touch(t, dir+"/certs/server.pem.txt"), "r", 0, ""},
		{touch(t, dir+"/proj/.env"), "r", 7, events.OpRead},
		{touch(t, dir+"/ro/file"), "r", 0, ""},
		{dir + "/ro/file", "w", 6, events.OpWrite},
		{dir + "/ro/file", "t", 6, events.OpWrite},
		{dir + "/secret.txt", "w", 1, events.OpRead}, // a read rule denies every open
	} {
		code, pid := run(t, sb, "open", tc.path, tc.mode)
		if tc.rule == 0 {
			if code != 0 {
				t.Errorf("open(%s, %s) in sandbox: exit %d, want allowed", tc.path, tc.mode, code)
			}
			continue
		}
		if code != exitEPERM {
			t.Errorf("open(%s, %s) in sandbox: exit %d, want EPERM", tc.path, tc.mode, code)
			continue
		}
		ev := nextEvent(t, l)
		if ev.Kind != events.KindFile || ev.Op != tc.op || ev.Path != tc.path || ev.Rule != tc.rule ||
			int(ev.TGID) != pid || ev.CgroupID != sb.g.ID || ev.Backend != "lsm" || ev.Audit ||
			ev.Comm == "" {
			t.Errorf("open(%s, %s): event %+v, want file/%s rule %d pid %d", tc.path, tc.mode, ev, tc.op, tc.rule, pid)
		}
		// The same file stays readable outside the sandbox.
		if code, _ := run(t, nil, "open", tc.path, "r"); code != 0 {
			t.Errorf("open(%s) outside the sandbox: exit %d", tc.path, code)
		}
		if f, err := os.Open(tc.path); err != nil {
			t.Errorf("open(%s) by the test itself: %v", tc.path, err)
		} else {
			f.Close()
		}
	}
	noEvent(t, l)
}
