//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// runLimit bounds one aigate run. The VM is emulated and ten times
// slower: there Claude Code alone took 65-90 s to start and run a session
// at a host load of 12-24 on two CPUs.
var runLimit = map[bool]time.Duration{false: 2 * time.Minute, true: 4 * time.Minute}[inVM()]

// backends is the table every scenario runs against. On the host (CI's
// make test-kernel) fanotify runs and lsm skips, since the host refuses
// LSM programs; in the VM (make vmtest, AIGATE_REQUIRE_LSM=1) both run, so
// both backends are proven on the guest's 6.1 kernel too.
var backends = []struct {
	name  string
	ready func(t *testing.T)
}{
	{"fanotify", requireSandboxes},
	{"lsm", func(t *testing.T) {
		requireSandboxes(t)
		if err := probeLSM(); err != nil {
			testutil.SkipUnlessLSM(t, "BPF LSM cannot enforce on this kernel: "+err.Error())
		}
	}},
}

var (
	lsmOnce sync.Once
	lsmErr  error
)

// probeLSM is loader.ProbeLSM, once per test binary.
func probeLSM() error {
	lsmOnce.Do(func() { lsmErr = loader.ProbeLSM() })
	return lsmErr
}

func requireSandboxes(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, "no cgroup v2 mount: "+err.Error())
	}
}

// eachBackend runs f in a subtest per backend, each in a world of its own.
func eachBackend(t *testing.T, f func(t *testing.T, w *world)) {
	eachBackendVM(t, false, f)
}

// inVM reports whether this runs in vmtest's guest. The guest is emulated:
// there every lsm scenario runs, through the shared agent (agent_test.go),
// and the fanotify variants run only where marked for the VM (they all run
// on the host, in make test-kernel, where a skip fails).
func inVM() bool { return os.Getenv("AIGATE_VMTEST") == "1" }

// eachBackendVM is eachBackend for a scenario whose fanotify variant also
// runs in the VM when vm is true. The lsm variant always runs there.
func eachBackendVM(t *testing.T, vm bool, f func(t *testing.T, w *world)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			if inVM() && !vm && b.name != "lsm" {
				testutil.HostOnly(t)
			}
			b.ready(t)
			f(t, newWorld(t, b.name))
		})
	}
}

// world is a user's machine for one scenario: a home, a project in it, a
// bin directory first on PATH, and an agent socket of its own (aigate run
// embeds an agent on it: never the machine's), or in the VM the shared lsm
// agent's (see agent_test.go).
type world struct {
	t       *testing.T
	backend string
	bin     string
	home    string
	proj    string
	bindir  string
	sock    string
	shared  bool // sock is the shared agent's
	events  string
	// trust holds the policy records of the world's embedded runs and of
	// its root commands with no agent (--trust-dir): never the machine's
	// /var/lib/aigate/trust.
	trust string
	env   []string
}

func newWorld(t *testing.T, backend string) *world {
	t.Helper()
	base := t.TempDir()
	w := &world{
		t:       t,
		backend: backend,
		bin:     binary(t),
		home:    filepath.Join(base, "home"),
		bindir:  filepath.Join(base, "bin"),
		sock:    filepath.Join(base, "aigate.sock"),
		events:  filepath.Join(base, "events.jsonl"),
		trust:   filepath.Join(base, "trust"),
	}
	if useSharedAgent(backend) {
		w.sock, w.shared = sharedAgentSocket(t), true
	}
	w.proj = filepath.Join(w.home, "proj")
	for _, d := range []string{w.proj, w.bindir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Root's and only root's, as aigate requires of a trust directory;
	// it goes with base.
	if err := os.Mkdir(w.trust, 0o700); err != nil {
		t.Fatal(err)
	}
	path := w.bindir
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path += ":" + v
		}
	}
	var env []string
	for _, kv := range CleanEnv(os.Environ()) {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	w.env = append(env, "PATH="+path, "HOME="+w.home, "NO_COLOR=1", api.SocketEnv+"="+w.sock)
	// AIGATE_E2E_LOG_LEVEL=debug shows what aigate does (CleanEnv drops
	// the AIGATE_ variables the test itself was started with).
	if l := os.Getenv("AIGATE_E2E_LOG_LEVEL"); l != "" {
		w.env = append(w.env, "AIGATE_LOG_LEVEL="+l)
	}
	return w
}

// path maps "~/x" to the home and anything else to the project.
func (w *world) path(rel string) string {
	if r, ok := strings.CutPrefix(rel, "~/"); ok {
		return filepath.Join(w.home, r)
	}
	return filepath.Join(w.proj, rel)
}

// write creates a file of the world (see path) with content.
func (w *world) write(rel, content string) string {
	w.t.Helper()
	p := w.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// defaults writes the built-in policy with `aigate init`, as a new user
// would. Where sh is a multi-call binary (busybox in the VM), deny_exec
// names that are the same file as sh (nc, wget, telnet) are allowed again
// with `aigate allow exec`: aigate denies such a name by the inode it
// resolves to, which would deny sh itself (see
// TestE2EExecNameOfMultiCallBinary).
func (w *world) defaults() {
	w.t.Helper()
	w.aigate("init")
	sh, err := exec.LookPath("sh")
	if err != nil {
		w.t.Fatal(err)
	}
	shReal, _ := filepath.EvalSymlinks(sh)
	var allow []string
	for _, name := range []string{"curl", "wget", "nc", "ncat", "netcat", "ssh", "scp", "sftp", "rsync", "ftp", "telnet"} {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if real, _ := filepath.EvalSymlinks(p); real == shReal {
			allow = append(allow, name)
		}
	}
	if len(allow) > 0 {
		w.t.Logf("allowing %v: the same file as sh (%s)", allow, shReal)
		w.aigate(append([]string{"allow", "exec"}, allow...)...)
	}
}

// config writes the global config; it replaces the built-in defaults. The
// agent (shared, or the one run embeds) keeps the policy last accepted and
// refuses a looser one: the user's own edit is accepted, as a user would
// after editing by hand (with no agent running, root's `aigate policy
// accept` records where an embedded run compares).
func (w *world) config(yaml string) {
	w.t.Helper()
	w.write("~/.aigate/config.yaml", yaml)
	w.aigate("policy", "accept", "--yes")
}

// installHelper copies the test binary into the bin directory as name: a
// real static executable, which runs as the "true" helper.
func (w *world) installHelper(name string) string {
	w.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		w.t.Fatal(err)
	}
	src, err := os.Open(exe)
	if err != nil {
		w.t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(w.bindir, name)
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		w.t.Fatal(err)
	}
	// Bytes after the ELF image make it another program than the test
	// binary, which runs in the sandboxes too: deny_exec of name refuses
	// copies of the file by content (size, then SHA-256).
	if _, err := f.WriteString("\naigate e2e helper " + name + "\n"); err != nil {
		w.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		w.t.Fatal(err)
	}
	return dst
}

// aigate runs a configuration command (init, deny, ...) in the project.
func (w *world) aigate(args ...string) string {
	w.t.Helper()
	cmd := exec.Command(w.bin, withTrustDir(args, w.trust)...)
	cmd.Dir, cmd.Env = w.proj, w.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		w.t.Fatalf("aigate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// withTrustDir is args with --trust-dir dir before any "--", for a
// command that records or checks the accepted global policy as root with
// no agent (init, deny, allow, reset, policy accept, status).
func withTrustDir(args []string, dir string) []string {
	i := slices.Index(args, "--")
	if i < 0 {
		i = len(args)
	}
	return slices.Concat(args[:i], []string{"--trust-dir", dir}, args[i:])
}

// runCmd is `aigate run --backend B --events FILE FLAGS -- ARGV` in the
// project, not started.
func (w *world) runCmd(flags []string, argv ...string) *exec.Cmd {
	args := append([]string{"run", "--backend", w.backend, "--events", w.events, "--trust-dir", w.trust}, flags...)
	cmd := exec.Command(w.bin, append(append(args, "--"), argv...)...)
	cmd.Dir, cmd.Env = w.proj, append([]string{}, w.env...)
	return cmd
}

// result is what a finished run left.
type result struct {
	code   int
	stdout string
	stderr string
	events []event
}

func (r result) String() string {
	return "exit " + itoa(r.code) + "\nstdout: " + r.stdout + "\nstderr: " + r.stderr
}

// run runs aigate to its end, bounded, and checks that it cleaned up.
func (w *world) run(flags []string, argv ...string) result {
	w.t.Helper()
	os.Remove(w.events)
	cmd := w.runCmd(flags, argv...)
	var stdout, stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if os.Getenv("AIGATE_E2E_LOG_LEVEL") != "" {
		cmd.Stderr = &stampWriter{w: &stderr, start: start}
	}
	code, err := ExitCode(RunBounded(cmd, runLimit))
	w.t.Logf("aigate run --backend %s: %v", w.backend, time.Since(start).Round(time.Millisecond))
	if err != nil {
		w.t.Fatalf("aigate run: %v\n%s", err, stderr.String())
	}
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String(), events: w.readEvents()}
	w.assertClean(cmd.Process.Pid, r.events)
	return r
}

// held is a run whose command holds its sandbox open until released:
// the test acts outside the sandbox meanwhile. The command is told where
// to signal readiness (readyEnv) and what to wait for (goEnv).
type held struct {
	w      *world
	cmd    *exec.Cmd
	stdout testutil.SyncBuffer
	stderr testutil.SyncBuffer
	waited chan error
	ready  string
	goFile string
}

func (w *world) startHeld(flags []string, argv ...string) *held {
	w.t.Helper()
	os.Remove(w.events)
	dir := w.t.TempDir()
	h := &held{w: w, waited: make(chan error, 1), ready: filepath.Join(dir, "ready"), goFile: filepath.Join(dir, "go")}
	h.cmd = w.runCmd(flags, argv...)
	h.cmd.Env = append(h.cmd.Env, readyEnv+"="+h.ready, goEnv+"="+h.goFile)
	h.cmd.Stdout, h.cmd.Stderr = &h.stdout, &h.stderr
	start := time.Now()
	h.cmd.WaitDelay = 5 * time.Second
	if err := h.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { h.waited <- WaitBounded(h.cmd, runLimit) }()
	w.t.Cleanup(func() { _ = h.cmd.Process.Kill() })
	deadline := time.After(runLimit)
	for {
		if _, err := os.Stat(h.ready); err == nil {
			w.t.Logf("aigate run --backend %s: command ready after %v", w.backend, time.Since(start).Round(time.Millisecond))
			return h
		}
		select {
		case err := <-h.waited:
			w.t.Fatalf("the run ended before its command was ready (%v)\nstdout: %s\nstderr: %s", err, h.stdout.String(), h.stderr.String())
		case <-deadline:
			w.t.Fatalf("the command never got ready\nstderr: %s", h.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// finish releases the command and waits for the run's end.
func (h *held) finish() result {
	h.w.t.Helper()
	if err := os.WriteFile(h.goFile, nil, 0o644); err != nil {
		h.w.t.Fatal(err)
	}
	code, err := ExitCode(<-h.waited)
	if err != nil {
		h.w.t.Fatalf("aigate run: %v\n%s", err, h.stderr.String())
	}
	r := result{code: code, stdout: h.stdout.String(), stderr: h.stderr.String(), events: h.w.readEvents()}
	h.w.assertClean(h.cmd.Process.Pid, r.events)
	return r
}

// event is one JSON line of --events, with the fields docs/events.md
// documents (decoded on their own, so a renamed field fails here).
type event struct {
	Time     string `json:"time"`
	Sandbox  string `json:"sandbox"`
	CgroupID uint64 `json:"cgroup_id"`
	PID      int    `json:"pid"`
	TGID     int    `json:"tgid"`
	UID      int    `json:"uid"`
	Comm     string `json:"comm"`
	Kind     string `json:"kind"`
	Op       string `json:"op"`
	Path     string `json:"path"`
	Addr     string `json:"addr"`
	RuleID   int    `json:"rule_id"`
	Rule     string `json:"rule"`
	Audit    bool   `json:"audit"`
	Backend  string `json:"backend"`
	Count    int    `json:"count"` // identical denials folded into one line; 0 is 1
}

func (w *world) readEvents() []event {
	w.t.Helper()
	data, err := os.ReadFile(w.events)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		w.t.Fatal(err)
	}
	var evs []event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			w.t.Fatalf("events line %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

// findEvent returns the event for op on target (a path or an address).
func findEvent(evs []event, op, target string) (event, bool) {
	for _, e := range evs {
		if e.Op == op && (e.Path == target || e.Addr == target) {
			return e, true
		}
	}
	return event{}, false
}

// checkEvent asserts the fields every denial event must carry.
func (w *world) checkEvent(e event, kind, rule string, audit bool) {
	w.t.Helper()
	if e.Kind != kind || e.Rule != rule || e.Backend != w.backend || e.Audit != audit {
		w.t.Errorf("event %+v: want kind %s, rule %q, backend %s, audit %v", e, kind, rule, w.backend, audit)
	}
	if e.Sandbox == "" || e.CgroupID == 0 || e.TGID == 0 || e.PID == 0 || e.Comm == "" || e.RuleID == 0 || e.UID != os.Geteuid() {
		w.t.Errorf("event %+v lacks sandbox, cgroup id, pids, comm or rule id, or uid is not %d", e, os.Geteuid())
	}
	if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
		w.t.Errorf("event time %q: %v", e.Time, err)
	}
}

// assertClean checks what a finished run must not leave: its sandbox
// cgroups (by owner pid, and by the names its events carried), and any
// process of aigate for this world (the embedded agent's fanotify guard
// is a copy of aigate in a session of its own).
func (w *world) assertClean(pid int, evs []event) {
	w.t.Helper()
	root, err := cgroup.Mountpoint()
	if err != nil {
		w.t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range evs {
		names[e.Sandbox] = true
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		owned, err := SandboxesOf(pid)
		if err != nil {
			w.t.Fatal(err)
		}
		left = append(left, owned...)
		if w.shared {
			owned, err := SandboxesOf(sharedAgentPID())
			if err != nil {
				w.t.Fatal(err)
			}
			left = append(left, owned...)
		}
		for n := range names {
			if _, err := os.Stat(filepath.Join(root, sandbox.DefaultParent, n)); err == nil {
				left = append(left, n)
			}
		}
		procs := w.processes()
		if len(left) == 0 && len(procs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Errorf("10 s after aigate (pid %d) exited: sandbox cgroups left %v, aigate processes left %v", pid, left, procs)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processes lists live processes of this world's aigate: those of the
// binary whose environment names this world's socket.
func (w *world) processes() []int {
	var mine []int
	for _, pid := range ProcessesOf(w.bin) {
		env, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "environ"))
		if err == nil && bytes.Contains(env, []byte(api.SocketEnv+"="+w.sock+"\x00")) {
			mine = append(mine, pid)
		}
	}
	return mine
}

func itoa(i int) string { return strconv.Itoa(i) }

// stampWriter prefixes each write with the time since start, to see where
// a slow run spends its time (with AIGATE_E2E_LOG_LEVEL).
type stampWriter struct {
	w     io.Writer
	start time.Time
}

func (s *stampWriter) Write(p []byte) (int, error) {
	_, err := fmt.Fprintf(s.w, "[%6.2fs] %s", time.Since(s.start).Seconds(), p)
	return len(p), err
}
