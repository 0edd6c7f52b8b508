//go:build linux

package escape

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// Every test here is a user's machine under attack: one unprivileged user
// (created once per test binary), one aigate agent per backend serving the
// user through its socket as `sudo aigate setup` would, and a fresh home and
// project per test. The attacker is whatever runs inside `aigate run`.

// runLimit bounds one aigate run; the VM is emulated and much slower.
const runLimit = 2 * time.Minute

var backends = []string{"fanotify", "lsm"}

// machine is what TestMain sets up once: the binary, the user, the group.
var machine struct {
	once sync.Once
	err  error
	dir  string // 0755: the binary, the agents' sockets, the homes
	bin  string
	name string // user and group name
	uid  uint32
	gid  uint32

	mu     sync.Mutex
	agents map[string]*agent
}

// agent is one `aigate agent` process serving the test user.
type agent struct {
	cmd  *exec.Cmd
	sock string
	log  *testutil.SyncBuffer
	err  error // why it could not start
}

func TestMain(m *testing.M) {
	cleanKept := e2e.KeptSets()
	code := m.Run()
	teardown()
	cleanKept()
	os.Exit(code)
}

// setup creates the machine on first use; tests that skip never pay for it.
func setup(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, "no cgroup v2 mount: "+err.Error())
	}
	machine.once.Do(func() { machine.err = prepare() })
	if machine.err != nil {
		t.Fatal(machine.err)
	}
}

func prepare() error {
	reapStale(os.TempDir())
	dir, err := os.MkdirTemp("", "aigate-escape-")
	if err != nil {
		return err
	}
	machine.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	machine.name = fmt.Sprintf("aiesc%d", os.Getpid()%100000)
	// Before the user exists: a binary killed from here on (go test's
	// timeout runs no teardown) is cleaned up by the next (reapStale).
	if err := writeOwner(dir, machine.name); err != nil {
		return err
	}
	bin, built, err := e2e.Binary(dir)
	if err != nil {
		return err
	}
	if !built { // a prebuilt binary may sit where the user cannot execute it
		dst := filepath.Join(dir, "aigate")
		if err := copyFile(bin, dst, 0o755); err != nil {
			return err
		}
		bin = dst
	}
	machine.bin = bin
	if err := addUser(machine.name, dir); err != nil {
		return err
	}
	u, err := user.Lookup(machine.name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	machine.uid, machine.gid = uint32(uid), uint32(gid)
	machine.agents = map[string]*agent{}
	return nil
}

// addUser creates a system user and its own group: with useradd on the
// host, by editing /etc/passwd and /etc/group in the VM guest (busybox has
// no useradd; its files live in the initramfs and vanish with it).
func addUser(name, dir string) error {
	if _, err := exec.LookPath("useradd"); err == nil {
		if out, err := exec.Command("groupadd", "--system", name).CombinedOutput(); err != nil {
			return fmt.Errorf("groupadd: %v: %s", err, out)
		}
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", filepath.Join(dir, "home"),
			"--gid", name, "--shell", "/bin/sh", name).CombinedOutput()
		if err != nil {
			return fmt.Errorf("useradd: %v: %s", err, out)
		}
		return nil
	}
	if os.Getenv("AIGATE_VMTEST") != "1" {
		return errors.New("useradd is missing: cannot create a test user")
	}
	id := 60000 + os.Getpid()%5000
	if err := appendLine("/etc/group", fmt.Sprintf("%s:x:%d:", name, id)); err != nil {
		return err
	}
	return appendLine("/etc/passwd", fmt.Sprintf("%s:x:%d:%d::%s:/bin/sh", name, id, id, filepath.Join(dir, "home")))
}

func appendLine(file, line string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func teardown() {
	machine.mu.Lock()
	for _, a := range machine.agents {
		if a.cmd != nil {
			_ = a.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = a.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = a.cmd.Process.Kill()
			}
		}
	}
	machine.mu.Unlock()
	_, _ = sandbox.Sweep(sandbox.DefaultParent)
	if machine.name != "" {
		if _, err := exec.LookPath("userdel"); err == nil {
			_ = exec.Command("userdel", machine.name).Run()
			_ = exec.Command("groupdel", machine.name).Run()
		}
	}
	if machine.dir != "" {
		os.RemoveAll(machine.dir)
	}
}

// agentFor starts (once) the agent of a backend, or skips: BPF LSM is
// refused on the CI host and required in the VM.
func agentFor(t *testing.T, backend string) *agent {
	t.Helper()
	machine.mu.Lock()
	defer machine.mu.Unlock()
	a := machine.agents[backend]
	if a == nil {
		a = startAgent(backend)
		machine.agents[backend] = a
	}
	if a.err != nil {
		t.Fatalf("agent (%s): %v", backend, a.err)
	}
	return a
}

func startAgent(backend string) *agent {
	a := &agent{sock: filepath.Join(machine.dir, backend+".sock"), log: &testutil.SyncBuffer{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.err = err
		return a
	}
	metrics := ln.Addr().String()
	ln.Close()
	a.cmd = exec.Command(machine.bin, "--log-level", "debug", "agent", "--socket", a.sock,
		"--metrics-addr", metrics, "--backend", backend, "--group", machine.name,
		"--trust-dir", filepath.Join(machine.dir, "trust-"+backend))
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	// Pdeathsig: a test binary killed by its timeout must not leave an
	// agent behind, whose fanotify marks would keep every opener of a
	// marked file on the machine waiting for its answers.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := a.cmd.Start(); err != nil {
		a.cmd, a.err = nil, err
		return a
	}
	if err := waitAgent(a.sock); err != nil {
		a.err = fmt.Errorf("%w\n%s", err, a.log.String())
	}
	return a
}

// waitAgent waits until the agent on sock answers, at most runLimit.
func waitAgent(sock string) error {
	c := api.NewClient(sock)
	deadline := time.Now().Add(runLimit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent did not answer: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eachBackend runs f once per backend, each in a box of its own. The lsm
// variant skips on a kernel that refuses BPF-LSM programs (the CI host)
// and fails where AIGATE_REQUIRE_LSM=1 (the VM). In a guest told to run
// only the kernel-bound fanotify variants (vmFanotifyEnv), f runs on lsm
// alone: see guestBackends.
func eachBackend(t *testing.T, f func(t *testing.T, b *box)) {
	eachBackendOf(t, guestBackends(false), f)
}

// eachBackendKernel is eachBackend for an attack whose outcome on the
// fanotify backend depends on the kernel (what fanotify reports for
// devpts and the consoles, what Landlock refuses): its fanotify variant
// runs in every guest.
func eachBackendKernel(t *testing.T, f func(t *testing.T, b *box)) {
	eachBackendOf(t, guestBackends(true), f)
}

// vmFanotifyEnv, set to "kernel" in a vmtest guest, runs the fanotify
// variants of only the tests that call eachBackendKernel there. make
// vmtest sets it for the 6.12 guest: every fanotify variant runs on the
// host (6.18, make test-kernel) and in the 6.1 guest (the oldest kernel,
// where fanotify differs most from the host's), and on 6.12 they took
// 10 of its 48 minutes, with the lsm variants the guest is there for.
const vmFanotifyEnv = "AIGATE_ESCAPE_VM_FANOTIFY"

// guestBackends returns the backends a test runs on here: both, except in
// a guest where vmFanotifyEnv is "kernel" and the test is not
// kernelBound. No variant is skipped (a skip in the guest fails CI): the
// left-out one is not started at all.
func guestBackends(kernelBound bool) []string {
	if os.Getenv("AIGATE_VMTEST") == "1" && os.Getenv(vmFanotifyEnv) == "kernel" && !kernelBound {
		return []string{"lsm"}
	}
	return backends
}

func eachBackendOf(t *testing.T, these []string, f func(t *testing.T, b *box)) {
	for _, backend := range these {
		t.Run(backend, func(t *testing.T) {
			setup(t)
			if backend == "lsm" {
				if err := probeLSM(); err != nil {
					testutil.SkipUnlessLSM(t, "BPF LSM cannot enforce on this kernel: "+err.Error())
				}
			}
			f(t, newBox(t, backend))
		})
	}
}

var (
	lsmOnce sync.Once
	lsmErr  error
)

func probeLSM() error {
	lsmOnce.Do(func() { lsmErr = loader.ProbeLSM() })
	return lsmErr
}

// box is one test's view of the machine: the test user's fresh home with a
// project in it, the default policy (`aigate init`), and the agent of one
// backend.
type box struct {
	t       *testing.T
	backend string
	agent   *agent
	home    string
	proj    string
	events  string
	// limit bounds one aigate run of the box (0: runLimit).
	limit time.Duration
	// env is added to the environment of every command of the user's
	// (asUser): the user's shell's own variables.
	env []string
}

func newBox(t *testing.T, backend string) *box {
	t.Helper()
	a := agentFor(t, backend)
	home, err := os.MkdirTemp(machine.dir, "home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	// The shared agent's log of this box's time, when the test failed:
	// what the agent did about its sandboxes (the tests of a package run
	// one at a time in the guests, so little else is in it).
	from := a.log.Len()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the %s agent's log since this box was made:\n%s", backend, lastLines(a.log.Since(from), 200))
		}
	})
	b := &box{t: t, backend: backend, agent: a, home: home, proj: filepath.Join(home, "proj"),
		events: filepath.Join(home, "events.jsonl")}
	b.mkdir(home)
	b.mkdir(b.proj)
	b.write(".env", "API_KEY=sk-escape-test-secret\n")
	b.aigate("init")
	return b
}

// afterKill ends a script whose attack the fanotify backend answers after
// the fact, by killing the sandbox: it waits secs for the kill (under TCG
// the watcher can be seconds late; the kill ends the wait at once), then
// prints "survived", which a kill keeps from being printed. The LSM
// backend refuses the attack itself and kills nothing, so the wait there
// only cost time: 30 s a script in the guests, where only lsm runs.
func (b *box) afterKill(secs int) string {
	if b.backend == "fanotify" {
		return fmt.Sprintf("sleep %d; echo survived", secs)
	}
	return "echo survived"
}

// path maps "~/x" to the home and anything else to the project.
func (b *box) path(rel string) string {
	if r, ok := strings.CutPrefix(rel, "~/"); ok {
		return filepath.Join(b.home, r)
	}
	if filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(b.proj, rel)
}

func (b *box) mkdir(p string) {
	b.t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		b.t.Fatal(err)
	}
	b.chown(p)
}

func (b *box) chown(p string) {
	b.t.Helper()
	if err := os.Lchown(p, int(machine.uid), int(machine.gid)); err != nil {
		b.t.Fatal(err)
	}
}

// write creates a file owned by the user (see path), with its directories.
func (b *box) write(rel, content string) string {
	b.t.Helper()
	p := b.path(rel)
	for d := filepath.Dir(p); len(d) > len(b.home) && strings.HasPrefix(d, b.home); d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		defer b.mkdir(d) // parents first: deferred calls run last-in first-out
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		b.t.Fatal(err)
	}
	b.chown(p)
	return p
}

// read returns a file's content, "" when it does not exist.
func (b *box) read(rel string) string {
	data, _ := os.ReadFile(b.path(rel))
	return string(data)
}

// asUser makes cmd run as the test user in the project, with the
// environment an ordinary login would give it and this box's agent.
func (b *box) asUser(cmd *exec.Cmd) *exec.Cmd {
	cmd.Dir = b.proj
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + b.home, "USER=" + machine.name,
		"NO_COLOR=1", api.SocketEnv + "=" + b.agent.sock}, append(slices.Clip(b.env), cmd.Env...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: machine.uid, Gid: machine.gid, Groups: []uint32{machine.gid}},
		Setpgid:    true,
	}
	cmd.WaitDelay = 5 * time.Second // a grandchild holding the pipes must not hold the test
	return cmd
}

// aigate runs a configuration command (init, deny, ...) as the user.
func (b *box) aigate(args ...string) string {
	b.t.Helper()
	out, err := b.asUser(exec.Command(machine.bin, args...)).CombinedOutput()
	if err != nil {
		b.t.Fatalf("aigate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// config replaces the user's config file (the defaults of `init`), as
// the user would by hand, and accepts it outside any sandbox (the agent
// refuses a run whose global policy loosens the accepted one).
func (b *box) config(yaml string) {
	b.t.Helper()
	b.write("~/.aigate/config.yaml", yaml)
	b.aigate("policy", "accept", "--yes")
}

// result is what a finished run left.
type result struct {
	code   int
	stdout string
	stderr string
	events []events.Event
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s\nevents: %+v", r.code, r.stdout, r.stderr, r.events)
}

// denied returns the first event of op whose path or address contains
// target.
func (r result) denied(op events.Op, target string) (events.Event, bool) {
	for _, e := range r.events {
		if e.Op == op && (strings.Contains(e.Path, target) || strings.Contains(e.Addr.String(), target) ||
			(target != "" && strings.Contains(e.Domain, target))) {
			return e, true
		}
	}
	return events.Event{}, false
}

// sh runs `aigate run [flags] -- sh -c script` as the user, to its end.
func (b *box) sh(script string, flags ...string) result {
	b.t.Helper()
	return b.run(flags, "sh", "-c", script)
}

// run runs `aigate run --events FILE [flags] -- argv` as the user.
func (b *box) run(flags []string, argv ...string) result {
	b.t.Helper()
	os.Remove(b.events)
	args := append([]string{"run", "--events", b.events}, flags...)
	cmd := b.asUser(exec.Command(machine.bin, append(append(args, "--"), argv...)...))
	var stdout, stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code, err := e2e.ExitCode(e2e.RunBounded(cmd, cmp.Or(b.limit, runLimit)))
	if err != nil {
		b.t.Fatalf("aigate run: %v\n%s", err, stderr.String())
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String(), events: b.readEvents()}
}

func (b *box) readEvents() []events.Event {
	b.t.Helper()
	data, err := os.ReadFile(b.events)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		b.t.Fatal(err)
	}
	var evs []events.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var e events.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			b.t.Fatalf("events line %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

// outside starts argv as the same user, outside any sandbox (a shell of
// the user's, an editor, a server), and kills it when the test ends.
func (b *box) outside(argv ...string) *exec.Cmd {
	b.t.Helper()
	cmd := b.asUser(exec.Command(argv[0], argv[1:]...))
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

// outsideRun runs a shell script as the user outside any sandbox (the
// user's next ordinary action) and returns its combined output.
func (b *box) outsideRun(script string) (string, error) {
	b.t.Helper()
	cmd := b.asUser(exec.Command("sh", "-c", script))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
