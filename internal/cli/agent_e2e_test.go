//go:build linux

package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// These tests run `aigate agent` as a separate process, as systemd would,
// and `aigate run` / `aigate watch` as an unprivileged user who talks to
// it: the path every ordinary user takes.

// agentWorld is one external agent and one unprivileged user.
type agentWorld struct {
	bin     string
	dir     string // 0755, holds the binary and the socket
	sock    string
	metrics string // host:port
	uid     uint32
	gid     uint32
	home    string
	proj    string

	agent    *exec.Cmd
	agentLog *testutil.SyncBuffer
	agentEnd chan error
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// newAgentWorld builds aigate where any user may execute it (the exec
// helper is a copy of aigate run as the user), creates a group and a user
// in it with a home and a project holding a .env, and starts the agent
// with the fanotify backend on a socket of its own that the group may use.
func newAgentWorld(t *testing.T) *agentWorld {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	for _, tool := range []string{"useradd", "userdel", "groupadd", "groupdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipUnlessKernel(t, tool+" is missing: cannot create a test user")
		}
	}
	dir, err := os.MkdirTemp("", "aigate-agent-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &agentWorld{dir: dir, sock: filepath.Join(dir, "aigate.sock"), bin: filepath.Join(dir, "aigate")}
	if out, err := exec.Command("go", "build", "-o", w.bin, "../../cmd/aigate").CombinedOutput(); err != nil {
		t.Fatalf("build aigate: %v\n%s", err, out)
	}

	name := fmt.Sprintf("aigt%d", os.Getpid()%100000)
	mustRun(t, "groupadd", "--system", name)
	t.Cleanup(func() { _ = exec.Command("groupdel", name).Run() })
	w.home = filepath.Join(dir, "home")
	mustRun(t, "useradd", "--system", "--no-create-home", "--home-dir", w.home, "--gid", name, "--shell", "/bin/sh", name)
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	w.uid, w.gid = uint32(uid), uint32(gid)
	w.proj = filepath.Join(w.home, "proj")
	if err := os.MkdirAll(w.proj, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.proj, ".env"), []byte("API_KEY=secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{w.home, w.proj, filepath.Join(w.proj, ".env")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.metrics = ln.Addr().String()
	ln.Close()
	// What an agent killed by a test leaves is swept at the end; Sweep
	// removes only sandboxes whose owner is dead.
	t.Cleanup(func() { _, _ = sandbox.Sweep(sandbox.DefaultParent) })
	w.startAgent(t, name)
	return w
}

func (w *agentWorld) startAgent(t *testing.T, group string) {
	t.Helper()
	w.agentLog = &testutil.SyncBuffer{}
	// Trust and policy records in the world's directory, not the
	// machine's /var/lib/aigate/trust: removed with the world, and kept
	// across a restart of its agent as an installed agent keeps them.
	w.agent = exec.Command(w.bin, "--log-level", "debug", "agent", "--socket", w.sock,
		"--metrics-addr", w.metrics, "--backend", "fanotify", "--group", group,
		"--trust-dir", filepath.Join(w.dir, "trust"))
	w.agent.Stderr = w.agentLog
	w.agent.Stdout = w.agentLog
	w.agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := w.agent.Start(); err != nil {
		t.Fatal(err)
	}
	w.agentEnd = make(chan error, 1)
	cmd := w.agent
	go func() { w.agentEnd <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.agentEnd:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("the agent did not stop on SIGTERM:\n%s", w.agentLog.String())
		}
	})
	c := api.NewClient(w.sock)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not answer: %v\n%s", err, w.agentLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// asUser makes cmd run as the test user, in the project, with an
// environment that points aigate at the test's agent.
func (w *agentWorld) asUser(cmd *exec.Cmd) *exec.Cmd {
	cmd.Dir = w.proj
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + w.home, "NO_COLOR=1", api.SocketEnv + "=" + w.sock}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: w.uid, Gid: w.gid, Groups: []uint32{w.gid}},
		Setpgid:    true,
	}
	// A grandchild holding the output pipes must not hold the test.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// waitLog waits until the agent's log holds s.
func (w *agentWorld) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(w.agentLog.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent's log never said %q:\n%s", s, w.agentLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *agentWorld) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + w.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

func counter(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestE2EAgentUnprivilegedRun: an ordinary user, no sudo, runs `aigate run
// -- cat .env` through the agent: cat is refused, the blocked line is
// printed, `aigate watch --json` in another process of the same user sees
// the same event, and the metrics count exactly that one denial.
func TestE2EAgentUnprivilegedRun(t *testing.T) {
	w := newAgentWorld(t)
	env := filepath.Join(w.proj, ".env")

	var watchErr testutil.SyncBuffer
	watch := w.asUser(exec.Command(w.bin, "watch", "--json"))
	watch.Stderr = &watchErr
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watch.Process.Kill(); _ = watch.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The watcher is subscribed once the agent has read its request.
	w.waitLog(t, `"op": "watch"`)
	// It says so at once, rather than nothing until the first event.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(watchErr.String(), "aigate: watching your sandboxes through the agent at "); {
		if time.Now().After(deadline) {
			t.Fatalf("watch did not say it was connected: %q", watchErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	var out, errOut bytes.Buffer
	run := w.asUser(exec.Command(w.bin, "run", "--", "cat", ".env"))
	run.Stdout, run.Stderr = &out, &errOut
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := e2e.ExitCodeOf(t, runWithContext(ctx, run))
	if code != 1 {
		t.Fatalf("exit %d, want cat's 1\nstdout: %s\nstderr: %s\nagent:\n%s", code, out.String(), errOut.String(), w.agentLog.String())
	}
	if strings.Contains(out.String(), "secret") {
		t.Fatalf("the secret leaked: %q", out.String())
	}
	// The agent recorded the user's policy in the world's trust directory
	// (so none of a test's records are left on the machine).
	if _, err := os.Stat(filepath.Join(w.dir, "trust", fmt.Sprintf("%d.policy.yaml", w.uid))); err != nil {
		t.Errorf("the user's policy record is not in the world's trust directory: %v", err)
	}
	for _, want := range []string{
		// cat and aigate share stderr and cat writes its message in
		// pieces, so aigate's line may land inside cat's: match the tail.
		".env: Operation not permitted",
		"aigate: blocked read " + env + " (cat, pid ",
		"rule .env)",
		"aigate: 1 operation blocked (1 read)",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("run's stderr lacks %q:\n%s", want, errOut.String())
		}
	}

	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatalf("watch ended without an event: %s", watchErr.String())
		}
		var e events.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("watch printed %q: %v", line, err)
		}
		if e.Path != env || e.Op != events.OpRead || e.Kind != events.KindFile || e.Comm != "cat" ||
			e.UID != w.uid || e.RuleText != ".env" || e.Backend != "fanotify" || !strings.HasPrefix(e.Sandbox, "s") {
			t.Errorf("watch saw %+v", e)
		}
		if !strings.Contains(errOut.String(), fmt.Sprintf("pid %d,", e.TGID)) {
			t.Errorf("watch's event (pid %d) is not run's:\n%s", e.TGID, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch saw nothing; its stderr: %s", watchErr.String())
	}

	fams := w.scrape(t)
	if v, ok := counter(fams, "aigate_violations_total", map[string]string{"kind": "file", "operation": "read", "mode": "enforce"}); !ok || v != 1 {
		t.Errorf("aigate_violations_total{kind=file,operation=read,mode=enforce} = %v (present %v), want 1", v, ok)
	}
	if v, ok := counter(fams, "aigate_sandboxes_active", nil); !ok || v != 0 {
		t.Errorf("aigate_sandboxes_active = %v (present %v) after the run, want 0", v, ok)
	}
}

// runWithContext runs cmd and kills it when ctx ends first.
func runWithContext(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	return cmd.Wait()
}

// startHeld starts, as the user, a run whose command leaves a background
// process (its pid in bg.pid) and then waits; it returns once both run.
func (w *agentWorld) startHeld(t *testing.T) (run *exec.Cmd, waited chan error, bgPid int, stderr *testutil.SyncBuffer) {
	t.Helper()
	pidFile, ready := filepath.Join(w.proj, "bg.pid"), filepath.Join(w.proj, "ready")
	os.Remove(pidFile)
	os.Remove(ready)
	stderr = &testutil.SyncBuffer{}
	run = w.asUser(exec.Command(w.bin, "run", "--", "sh", "-c",
		"sleep 600 & echo $! > "+pidFile+"; touch "+ready+"; wait"))
	run.Stderr = stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run.Process.Kill() })
	waited = make(chan error, 1)
	go func() { waited <- run.Wait() }()
	testutil.WaitForFile(t, ready, 20*time.Second, waited, &bytes.Buffer{})
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	bgPid, err = strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return run, waited, bgPid, stderr
}

// TestE2EAgentRunKilled: `aigate run` is killed with SIGKILL while its
// command and a background process run: the agent sees the session close
// and removes the sandbox, killing what ran in it.
func TestE2EAgentRunKilled(t *testing.T) {
	w := newAgentWorld(t)
	run, waited, bg, _ := w.startHeld(t)
	c := api.NewClient(w.sock)
	list, err := c.List(context.Background())
	if err != nil || len(list) != 1 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	cg, err := cgroup.ProcessCgroup(bg)
	if err != nil || !strings.HasSuffix(cg, "/"+list[0].Name) {
		t.Fatalf("the background process runs in %q (%v), not in sandbox %s", cg, err, list[0].Name)
	}
	root, _ := cgroup.Mountpoint()
	path := filepath.Join(root, sandbox.DefaultParent, list[0].Name)

	if err := run.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-waited
	testutil.WaitUntil(t, 10*time.Second, "the background process dies with its run", func() bool { return e2e.ProcessGone(bg) })
	testutil.WaitUntil(t, 10*time.Second, "the sandbox's cgroup is removed", func() bool { _, err := os.Stat(path); return os.IsNotExist(err) })
	testutil.WaitUntil(t, 10*time.Second, "the agent forgets the sandbox", func() bool {
		l, err := c.List(context.Background())
		return err == nil && len(l) == 0
	})
	if v, ok := counter(w.scrape(t), "aigate_sandboxes_active", nil); !ok || v != 0 {
		t.Errorf("aigate_sandboxes_active = %v (present %v), want 0", v, ok)
	}
	w.waitLog(t, `"reason": "client_gone"`)
}

// TestE2EAgentKilledGuard: the agent is killed with SIGKILL while a
// fanotify sandbox runs. Nothing would answer the sandbox's permission
// events any more, so the backend's guard kills the sandbox's processes:
// none runs on unconfined, and the run reports its command's death.
func TestE2EAgentKilledGuard(t *testing.T) {
	w := newAgentWorld(t)
	_, waited, bg, stderr := w.startHeld(t)
	if err := w.agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-w.agentEnd
	w.agentEnd <- nil // for the cleanup
	testutil.WaitUntil(t, 10*time.Second, "the sandbox's background process is killed after the agent died", func() bool { return e2e.ProcessGone(bg) })
	select {
	case err := <-waited:
		var ee *exec.ExitError
		if err == nil || !asExitError(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("run exited with %v after its command was killed; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("run did not end after the agent died; stderr:\n%s", stderr.String())
	}
}

func asExitError(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}

// asSudo makes cmd run as root as `sudo` would start it for the test user.
func (w *agentWorld) asSudo(cmd *exec.Cmd, sock string) *exec.Cmd {
	name := fmt.Sprintf("aigt%d", os.Getpid()%100000)
	cmd.Dir = w.proj
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "NO_COLOR=1", api.SocketEnv + "=" + sock,
		"SUDO_UID=" + strconv.Itoa(int(w.uid)), "SUDO_GID=" + strconv.Itoa(int(w.gid)), "SUDO_USER=" + name}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// TestE2ESudoRun: `sudo aigate run` acts for the user who ran sudo, through
// a running agent (root may create a sandbox for another uid) and through
// the agent run embeds when none listens on its socket (here a stale
// socket file is in the way and is taken over); the embedded agent serves
// that socket to other clients while the run lasts.
func TestE2ESudoRun(t *testing.T) {
	w := newAgentWorld(t)
	t.Run("external agent", func(t *testing.T) {
		var out, errOut bytes.Buffer
		run := w.asSudo(exec.Command(w.bin, "run", "--", "sh", "-c", "id -u; cat .env"), w.sock)
		run.Stdout, run.Stderr = &out, &errOut
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if code := e2e.ExitCodeOf(t, runWithContext(ctx, run)); code != 1 {
			t.Fatalf("exit %d, want cat's 1\n%s%s", code, out.String(), errOut.String())
		}
		if got := strings.TrimSpace(out.String()); got != strconv.Itoa(int(w.uid)) {
			t.Errorf("the command ran as uid %q, want the sudo user's %d", got, w.uid)
		}
		if !strings.Contains(errOut.String(), "aigate: blocked read "+filepath.Join(w.proj, ".env")) {
			t.Errorf("no blocked line:\n%s", errOut.String())
		}
		w.waitLog(t, fmt.Sprintf(`"owner": %d`, w.uid))
	})
	t.Run("embedded agent", func(t *testing.T) {
		sock := filepath.Join(w.dir, "embedded.sock")
		// A socket left by a dead agent: bound, never unlinked.
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
		ready := filepath.Join(w.proj, "ready-emb")
		os.Remove(ready)
		var errOut testutil.SyncBuffer
		run := w.asSudo(exec.Command(w.bin, "run", "--metrics-addr", "", "--trust-dir", filepath.Join(w.dir, "embedded-trust"),
			"--", "sh", "-c", "touch "+ready+"; exec sleep 600"), sock)
		run.Stderr = &errOut
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = run.Process.Kill() })
		waited := make(chan error, 1)
		go func() { waited <- run.Wait() }()
		testutil.WaitForFile(t, ready, 20*time.Second, waited, &bytes.Buffer{})

		c := api.NewClient(sock)
		ctx := context.Background()
		st, err := c.Status(ctx)
		if err != nil || st.PID != run.Process.Pid {
			t.Fatalf("status from the embedded agent = %+v, %v; want the run's pid %d", st, err, run.Process.Pid)
		}
		list, err := c.List(ctx)
		if err != nil || len(list) != 1 || list[0].Owner != w.uid || !list[0].Placed {
			t.Fatalf("list = %+v, %v; want one placed sandbox owned by uid %d", list, err, w.uid)
		}
		// Ending it from another client ends the run with its command's
		// death by SIGKILL.
		if err := c.End(ctx, list[0].Name); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-waited:
			if code := e2e.ExitCodeOf(t, err); code != 128+9 {
				t.Errorf("exit %d, want 137 (the command was killed)\n%s", code, errOut.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("the run did not end with its sandbox:\n%s", errOut.String())
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("the embedded agent left its socket behind (%v)", err)
		}
	})
}
