//go:build linux

package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/metrics"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// daemonEnv makes the test binary a real agent (BPF-LSM backend, pinned),
// so that a test can kill it with SIGKILL: "ready <metrics address>" on
// stdout once it serves.
const daemonEnv = "AIGATE_AGENT_TEST_DAEMON"

func init() {
	if os.Getenv(daemonEnv) == "" {
		return
	}
	if err := runDaemon(); err != nil {
		fmt.Fprintln(os.Stderr, "daemon:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runDaemon() error {
	be, err := backend.Open(policy.BackendLSM, backend.Options{PinPath: os.Getenv("AIGATE_TEST_PINS")})
	if err != nil {
		return err
	}
	a, err := New(Config{Backend: be, Socket: os.Getenv("AIGATE_TEST_SOCKET"), Parent: os.Getenv("AIGATE_TEST_PARENT"),
		Records: os.Getenv("AIGATE_TEST_RECORDS"), Build: "test"})
	if err != nil {
		return errors.Join(err, be.(enforce.Pinner).Release())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return errors.Join(err, a.Close())
	}
	go http.Serve(ln, metrics.Handler(a.Registry(), nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Println("ready", ln.Addr())
	return errors.Join(a.Serve(ctx), a.Close())
}

type daemon struct {
	cmd     *exec.Cmd
	metrics string
	exited  chan struct{}
}

func startDaemon(t *testing.T, env []string) *daemon {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, daemonEnv+"=1")...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-d.exited })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
		io.Copy(io.Discard, out)
	}()
	select {
	case s := <-line:
		addr, ok := strings.CutPrefix(strings.TrimSpace(s), "ready ")
		if !ok {
			t.Fatalf("agent did not start: %q", s)
		}
		d.metrics = "http://" + addr + "/metrics"
	case <-time.After(3 * time.Minute):
		t.Fatal("agent not ready after 3 minutes")
	}
	t.Logf("agent pid %d ready in %v", cmd.Process.Pid, time.Since(start).Round(time.Millisecond))
	return d
}

// readViolations scrapes the agent's aigate_violations_total{kind="file"}.
func (d *daemon) readViolations(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get(d.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, m := range fams["aigate_violations_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "kind" && l.GetValue() == "file" {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// countLines counts the lines of the child's log that equal s.
func countLines(t *testing.T, path, s string) int {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		if l == s {
			n++
		}
	}
	return n
}

// An agent killed with SIGKILL while a sandbox runs: the kernel keeps
// denying (pinned BPF-LSM state), the next agent adopts the sandbox (same
// name and owner, counters continued, its denials reach a watcher), and
// ending it removes its record, its cgroup and, when that agent stops,
// the pins.
func TestAgentCrash(t *testing.T) {
	testutil.RequireRoot(t)
	if err := loader.ProbeLSM(); err != nil {
		testutil.SkipUnlessLSM(t, err.Error())
	}
	parent := testParent(t)
	dir := t.TempDir()
	pins := fmt.Sprintf("/sys/fs/bpf/aigate-test-crash-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(pins) })
	records := filepath.Join(dir, "records")
	sock := filepath.Join(dir, "aigate.sock")
	env := []string{"AIGATE_TEST_PINS=" + pins, "AIGATE_TEST_SOCKET=" + sock, "AIGATE_TEST_PARENT=" + parent, "AIGATE_TEST_RECORDS=" + records}

	secret := filepath.Join(dir, "secret.txt")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "child.log")

	d1 := startDaemon(t, env)
	ctx := context.Background()
	c := api.NewClient(sock)
	home := t.TempDir()
	s, err := c.CreateSandbox(ctx, api.CreateRequest{Home: home, ProjectRoot: home,
		Global: &api.File{Path: filepath.Join(home, ".aigate/config.yaml"), Data: []byte("deny_read:\n  - " + secret + "\n")}})
	if err != nil {
		t.Fatal(err)
	}
	loop := fmt.Sprintf("while :; do if cat %s >/dev/null 2>&1; then echo read; else echo denied; fi >>%s; sleep 0.1; done", secret, log)
	child, err := launch.Start(s, exec.Command("/bin/sh", "-c", loop))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Signal(syscall.SIGKILL); child.Wait() })
	name := s.Sandbox.Name
	waitFor(t, "three denials", func() bool { return countLines(t, log, "denied") >= 3 })
	before := d1.readViolations(t)
	if before < 3 {
		t.Fatalf("violations %v before the crash, want >= 3", before)
	}

	d1.cmd.Process.Kill()
	<-d1.exited
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end with the agent")
	}
	n := countLines(t, log, "denied")
	waitFor(t, "denials with no agent", func() bool { return countLines(t, log, "denied") >= n+5 })
	if got := countLines(t, log, "read"); got != 0 {
		t.Fatalf("the child read the secret %d times", got)
	}

	d2 := startDaemon(t, env)
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != name || list[0].Owner != uint32(os.Getuid()) || list[0].Procs == 0 {
		t.Fatalf("list after restart: %+v, want %s of uid %d", list, name, os.Getuid())
	}
	w, err := c.Watch(ctx, api.WatchRequest{Sandbox: name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got := make(chan string, 1)
	go func() {
		ev, _, err := w.Next()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- ev.Sandbox + " " + ev.Path + " " + ev.RuleText
	}()
	select {
	case e := <-got:
		if want := name + " " + secret + " " + secret; e != want {
			t.Fatalf("watched %q, want %q (sandbox, path, rule recompiled)", e, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no event on the new agent's watch")
	}
	denied := countLines(t, log, "denied")
	after := d2.readViolations(t)
	if after < float64(denied) || after < before {
		t.Fatalf("violations %v after the restart (%v before), want >= the %d denials so far: the counters must continue", after, before, denied)
	}
	t.Logf("violations: %v before the crash, %v after the restart; %d denials logged", before, after, denied)
	if got := countLines(t, log, "read"); got != 0 {
		t.Fatalf("the child read the secret %d times", got)
	}

	if err := c.End(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(records, name+".json")); !os.IsNotExist(err) {
		t.Errorf("record after end: %v", err)
	}
	root, err := cgroup.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, parent, name)); !os.IsNotExist(err) {
		t.Errorf("cgroup after end: %v", err)
	}
	d2.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d2.exited:
	case <-time.After(time.Minute):
		t.Fatal("agent did not stop on SIGTERM")
	}
	if _, err := os.Stat(pins); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(pins)
		t.Errorf("pins after a clean stop: %v %v", err, ents)
	}
}
