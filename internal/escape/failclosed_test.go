//go:build linux

package escape

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestEscapeAgentKilled: enforcement must fail closed when aigate dies.
// The sandboxed process reads .env in one thread and connects to a denied
// address in another, each in a tight loop (so that an open waiting for
// an answer does not hold up the connects), while aigate is killed with SIGKILL, early (at its first
// refused try) and later (after half a second of them); not one try may
// succeed, before, during or after the death. Killed is either the agent
// that serves the user (`aigate agent`: on fanotify its guard kills the
// sandbox; on BPF LSM its pins keep enforcing, with no process left) or
// the agent that `sudo aigate run` embeds when none runs.
func TestEscapeAgentKilled(t *testing.T) {
	for _, kind := range []string{"agent", "embedded"} {
		for _, after := range []time.Duration{0, 500 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/after %v", kind, after), func(t *testing.T) {
				eachBackend(t, func(t *testing.T, b *box) { b.killDuring(kind, after) })
			})
		}
	}
}

// attack is a running tryLoop in a sandbox, and the aigate process whose
// death or stop the test is about.
type attack struct {
	out    string               // the loop's directory: ready, rounds-*, leaks
	pid    int                  // the loop
	cg     string               // its sandbox cgroup, as in /proc/PID/cgroup
	victim *exec.Cmd            // the agent, or the run that embeds it
	log    *testutil.SyncBuffer // the run's output, and the private agent's log
}

// startAttack starts tryLoop in a sandbox of an agent of kind (a private
// `aigate agent` or the agent `sudo aigate run` embeds) and returns once
// its first tries were refused.
func (b *box) startAttack(kind string) *attack {
	t := b.t
	// The denied address: a listener outside the sandbox on loopback,
	// which this policy does not allow.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	b.config(strings.Replace(b.read("~/.aigate/config.yaml"), "allow_loopback: own", "allow_loopback: false", 1))
	if !strings.Contains(b.read("~/.aigate/config.yaml"), "allow_loopback: false") {
		t.Fatal("the default config no longer says allow_loopback: own")
	}
	// Outside the home and the project: fanotify marks those, and while the
	// agent is stopped an open there waits for it, the test's own too.
	out, err := os.MkdirTemp(machine.dir, "out-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })
	at := &attack{out: out, log: &testutil.SyncBuffer{}}
	b.chown(out)
	loop := []string{clientBinary(t)}
	env := clientEnv + "=" + strings.Join([]string{"tryloop", at.out, b.path(".env"), ln.Addr().String()}, " ")

	var run *exec.Cmd
	switch kind {
	case "agent":
		a := b.privateAgent()
		at.victim, at.log = a.cmd, a.log
		run = exec.Command(machine.bin, append([]string{"run", "--"}, loop...)...)
		run.Env = []string{api.SocketEnv + "=" + a.sock, env}
		b.asUser(run)
	case "embedded":
		// `sudo aigate run` with no agent listening: run starts its own.
		// The loop is the command's child: the command dies with aigate
		// (Pdeathsig), and what must stay confined is what runs on.
		env += " child"
		run = exec.Command(machine.bin, append([]string{"run", "--backend", b.backend, "--metrics-addr", "",
			"--socket", filepath.Join(machine.dir, fmt.Sprintf("none%d.sock", os.Getpid())), "--trust-dir", filepath.Join(machine.dir, "trust-embedded"), "--user", machine.name, "--"}, loop...)...)
		run.Dir = b.proj
		run.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + b.home, "NO_COLOR=1", env}
		run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		run.WaitDelay = 5 * time.Second
		at.victim = run
	}
	run.Stdout, run.Stderr = at.log, at.log // with the agent's log: one stream, in order
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone, runExited := make(chan error, 1), make(chan struct{})
	go func() { runDone <- run.Wait(); close(runExited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
		<-runExited
	})

	testutil.WaitForFile(t, filepath.Join(at.out, "ready"), runLimit, runDone, at.log)
	data, _ := os.ReadFile(filepath.Join(at.out, "ready"))
	if at.pid, err = strconv.Atoi(string(data)); err != nil {
		t.Fatalf("ready: %q", data)
	}
	if at.cg, err = cgroup.ProcessCgroup(at.pid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killCgroupOf(at.cg) })
	return at
}

// noLeaks fails t if any try of the loop succeeded.
func (at *attack) noLeaks(t *testing.T, what string) {
	t.Helper()
	leaks, _ := os.ReadFile(filepath.Join(at.out, "leaks"))
	if len(leaks) > 0 {
		t.Errorf("%s: %d tries succeeded (%d opens, %d connects); tries so far: %d opens, %d connects\n%s",
			what, strings.Count(string(leaks), "\n"), strings.Count(string(leaks), "files"), strings.Count(string(leaks), "net"),
			at.rounds("files"), at.rounds("net"), at.log.String())
	}
}

func (at *attack) rounds(which string) int {
	data, _ := os.ReadFile(filepath.Join(at.out, "rounds-"+which))
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

func (b *box) killDuring(kind string, after time.Duration) {
	t := b.t
	at := b.startAttack(kind)
	if kind == "embedded" {
		// What the killed run pinned stays until a later run reaps it.
		t.Cleanup(func() {
			dirs, _ := filepath.Glob(fmt.Sprintf("/sys/fs/bpf/aigate-run-*-%d-*", at.victim.Process.Pid))
			for _, d := range dirs {
				os.RemoveAll(d)
			}
		})
	}
	time.Sleep(after)
	files, nets := at.rounds("files"), at.rounds("net")
	if err := at.victim.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// On fanotify the guard kills the sandbox; pinned BPF-LSM rules keep
	// enforcing on a loop that runs on. Either way the loop is watched for
	// a while after the death.
	deadline := time.Now().Add(3 * time.Second)
	for !e2e.ProcessGone(at.pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	died := e2e.ProcessGone(at.pid)
	killCgroupOf(at.cg)
	at.noLeaks(t, "around the death of aigate")
	if after > 0 && (files < 2 || nets < 2) { // the emulated VM is slow
		t.Errorf("the loop did %d file and %d network tries in %v before the kill: it was not trying", files, nets, after)
	}
	t.Logf("tries at the kill: %d opens, %d connects; at the end %d, %d; the loop died: %v",
		files, nets, at.rounds("files"), at.rounds("net"), died)
}

// killCgroupOf kills what is left in the sandbox cgroup cg (as named in
// /proc/PID/cgroup) when aigate could not.
func killCgroupOf(cg string) {
	root, err := cgroup.Mountpoint()
	if err != nil {
		return
	}
	dir := filepath.Join(root, cg)
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	for i := 0; i < 250; i++ {
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil || strings.Contains(string(data), "populated 0") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var privateAgents int

// privateAgent starts an agent of b's backend for this test alone (the
// test kills it), with a pin directory of its own on BPF LSM.
func (b *box) privateAgent() *agent {
	t := b.t
	privateAgents++
	name := fmt.Sprintf("%s-private%d", b.backend, privateAgents)
	a := &agent{sock: filepath.Join(machine.dir, name+".sock"), log: &testutil.SyncBuffer{}}
	// Its records in the machine's directory (removed with it), not in
	// /var/lib/aigate/trust.
	args := []string{"--log-level", "debug", "agent", "--socket", a.sock, "--metrics-addr", "",
		"--backend", b.backend, "--group", machine.name, "--trust-dir", filepath.Join(machine.dir, name+"-trust")}
	if b.backend == "lsm" {
		pin := filepath.Join("/sys/fs/bpf", fmt.Sprintf("aigate-escape-%d-%s", os.Getpid(), name))
		args = append(args, "--pin-dir", pin)
		t.Cleanup(func() { os.RemoveAll(pin) })
	}
	a.cmd = exec.Command(machine.bin, args...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Kill()
		<-done
	})
	if err := waitAgent(a.sock); err != nil {
		t.Fatalf("the private agent: %v\n%s", err, a.log.String())
	}
	return a
}

// TestEscapeAgentStopped: the agent is stopped (SIGSTOP: a debugger, or
// Ctrl-Z on a run that embeds it) while the sandboxed loop tries. Nothing
// may get through meanwhile. On fanotify nothing answers the loop's opens
// (the opening thread waits), and once the guard has missed the heartbeat
// for 2 s it freezes the sandbox (cgroup.freeze): the connecting thread
// stops too; when the agent resumes (SIGCONT) the sandbox is thawed and
// the loop goes on, still refused (it resumes within seconds, well inside
// the guard's 20 s release bound, past which the guard would kill the
// sandbox and the agent). On BPF LSM the kernel decides without the agent,
// and nothing is frozen.
func TestEscapeAgentStopped(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		at := b.startAttack("agent")
		if err := at.victim.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		defer func() {
			if !resumed {
				_ = at.victim.Process.Signal(syscall.SIGCONT)
			}
		}()
		root, err := cgroup.Mountpoint()
		if err != nil {
			t.Fatal(err)
		}
		freeze := filepath.Join(root, at.cg, "cgroup.freeze")
		if b.backend == "fanotify" {
			// The loop's open waits for an answer that does not come, in a
			// wait the freezer does not interrupt: cgroup.events never says
			// "frozen 1" while it waits. The freeze is asked for all the
			// same, and every other thread stops.
			deadline := time.Now().Add(20 * time.Second)
			for !fileSays(freeze, "1") {
				if time.Now().After(deadline) {
					t.Fatalf("the sandbox was not frozen 20 s after the agent stopped (%d connects so far)\n%s", at.rounds("net"), at.log.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			n := at.rounds("net")
			time.Sleep(500 * time.Millisecond)
			if m := at.rounds("net"); m != n {
				t.Errorf("the frozen loop went on trying: %d connects, then %d", n, m)
			}
		} else {
			time.Sleep(3 * time.Second)
			if fileSays(freeze, "1") {
				t.Errorf("BPF LSM: the sandbox was frozen, though the kernel enforces without the agent")
			}
		}
		at.noLeaks(t, "while the agent was stopped")

		if err := at.victim.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		resumed = true
		n := at.rounds("net")
		deadline := time.Now().Add(20 * time.Second)
		for fileSays(freeze, "1") || at.rounds("net") < n+10 {
			if time.Now().After(deadline) {
				t.Fatalf("the loop did not resume after the agent did (%d connects, then %d)", n, at.rounds("net"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		at.noLeaks(t, "after the agent resumed")
	})
}

func fileSays(path, want string) bool {
	data, _ := os.ReadFile(path)
	return strings.TrimSpace(string(data)) == want
}
