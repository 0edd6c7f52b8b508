//go:build linux

package fanotify

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

// TestOwnOpenInDecisionNoDeadlock: the decision path itself opens the
// protected file. aigate is outside every sandbox, so the reader answers
// that open inline while the worker waits on it.
func TestOwnOpenInDecisionNoDeadlock(t *testing.T) {
	var secret string
	hookErr := make(chan error, 16)
	e := newEnv(t, func(o *Options) {
		o.allInWorkers = true
		o.beforeDecide = func(*pending) {
			fd, err := unix.Open(secret, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			hookErr <- err
		}
	})
	secret = e.write(filepath.Join(e.project, ".env"), "K=v")
	s := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	if got := e.run(s, "open", secret, "r"); got != "EPERM" {
		t.Fatalf("sandboxed read: %s, want EPERM", got)
	}
	if err := <-hookErr; err != nil {
		t.Fatalf("aigate's own open of the marked file: %v", err)
	}
	// Had the worker waited on its own open, the reaper would have denied
	// the sandboxed open after DecisionTimeout, with no event.
	if h := e.b.Health(); h.Timeouts != 0 {
		t.Fatalf("health %+v: the decision timed out", h)
	}
	if ev := e.event(); ev.Path != secret {
		t.Fatalf("event %+v", ev)
	}
}

// TestDecisionTimeoutFailsClosed: a decision that never finishes becomes a
// denial after DecisionTimeout.
func TestDecisionTimeoutFailsClosed(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(o *Options) {
		o.DecisionTimeout = 300 * time.Millisecond
		o.allInWorkers = true
		o.beforeDecide = func(*pending) { <-release }
	})
	t.Cleanup(func() { close(release) })
	secret := e.write(filepath.Join(e.project, ".env"), "K=v")
	s := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	// Created after Add with two names: no ignore mask, so its open is
	// reported (and would be allowed) through the directory's mark.
	fine := e.writeReported(filepath.Join(e.project, "main.go"), "package main")
	// Even an allowed file is refused when its verdict cannot be reached.
	for _, p := range []string{secret, fine} {
		start := time.Now()
		if got := e.run(s, "open", p, "r"); got != "EPERM" {
			t.Fatalf("sandboxed read of %s with a stuck decision: %s, want EPERM", p, got)
		}
		// The helper's own start is in the time too: at load 20 it took
		// 2.7 s in CI. What must not answer is the group's guard, which
		// releases a stuck group after 20 s; Timeouts below says the
		// reaper refused both.
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("denied after %s, want about 300ms plus the helper's start", d)
		}
	}
	// Outside the sandbox nothing waits for the stuck workers.
	openHere(t, secret, unix.O_RDONLY)
	if h := e.b.Health(); h.Timeouts != 2 {
		t.Fatalf("health %+v, want 2 timeouts", h)
	}
}

// TestInlineDecisionsSkipStuckWorkers: the reader decides what needs only
// the event's fd, the policy and what it knows already itself
// (decideInline), so a deny_read file is refused and an unrelated one
// allowed at once even while every worker is stuck, and so is a read of a
// deny_exec binary by a program that is no loader; what needs a worker (a
// copy of the loader running the binary: its exe is hashed) still fails
// closed after DecisionTimeout.
func TestInlineDecisionsSkipStuckWorkers(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(o *Options) {
		o.DecisionTimeout = 300 * time.Millisecond
		o.beforeDecide = func(*pending) { <-release }
	})
	t.Cleanup(func() { close(release) })
	secret := e.write(filepath.Join(e.project, ".env"), "K=v")
	tool := e.copyBin(filepath.Join(e.project, "tools", "runme"))
	s := e.sandbox(policy.Policy{DenyRead: rules(".env"), DenyExec: rules("tools/runme")})
	// Created after Add with two names: no ignore mask, so its open is
	// reported.
	fine := e.writeReported(filepath.Join(e.project, "main.go"), "package main")
	// Had either waited for a worker, the reaper would have denied it
	// (the allowed one too) and counted a timeout.
	for _, c := range []struct{ path, want string }{{secret, "EPERM"}, {fine, "ok"}} {
		if e.ignoreMasked(c.path) {
			t.Fatalf("%s has an ignore mask: its read would never reach the reader", c.path)
		}
		if got := e.run(s, "open", c.path, "r"); got != c.want {
			t.Fatalf("sandboxed read of %s with stuck workers: %s, want %s", c.path, got, c.want)
		}
	}
	if ev := e.event(); ev.Path != secret {
		t.Fatalf("event %+v, want the refusal of %s", ev, secret)
	}
	if h := e.b.Health(); h.Timeouts != 0 {
		t.Fatalf("health %+v: an inline decision timed out", h)
	}
	if got := e.run(s, "open", tool, "r"); got != "ok" {
		t.Fatalf("read of a deny_exec binary with stuck workers: %s, want ok (decided inline)", got)
	}
	if h := e.b.Health(); h.Timeouts != 0 {
		t.Fatalf("health %+v: the read of a deny_exec binary waited for a worker", h)
	}
	ld, err := filepath.EvalSymlinks(interpOf(t, tool))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(ld)
	if err != nil {
		t.Fatal(err)
	}
	ldCopy := filepath.Join(t.TempDir(), "my-ld")
	if err := os.WriteFile(ldCopy, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := e.run(s, "cmd", ldCopy, tool); !strings.Contains(got, "Operation not permitted") {
		t.Fatalf("%s %s with stuck workers: %q, want Operation not permitted (timeout)", ldCopy, tool, got)
	}
	if h := e.b.Health(); h.Timeouts != 1 {
		t.Fatalf("health %+v, want 1 timeout", h)
	}
}

// TestCloseKillsLiveSandbox: closing the backend while a sandbox is still
// registered must not leave it running unconfined.
func TestCloseKillsLiveSandbox(t *testing.T) {
	e := newEnv(t, nil)
	s := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	cmd := e.cmd(s, "sleep")
	if err := forksafe.Start(cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("sandboxed process survived Close")
	}
	if populated(s.CgroupPath) {
		t.Fatal("sandbox cgroup still populated after Close")
	}
}

// TestAigateDeathKillsSandbox runs the backend in a helper process,
// SIGKILLs it, and checks that the guard kills the sandbox before the kernel
// drops the group (which would allow every open).
func TestAigateDeathKillsSandbox(t *testing.T) {
	e := newEnv(t, nil) // for the temp tree and the skip checks only
	secret := e.write(filepath.Join(e.project, "token"), "t")
	g, err := cgroup.Create("aigate-test", fmt.Sprintf("fandeath%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})
	s := &sbox{Sandbox: &enforce.Sandbox{CgroupPath: g.Path}, g: g}
	helper := e.cmd(nil, "backend", g.Path, secret)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := forksafe.Start(helper); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper backend: %q, %v", line, err)
	}
	if got := e.run(s, "open", secret, "r"); got != "EPERM" {
		t.Fatalf("read under the helper's backend: %s, want EPERM", got)
	}
	sleeper := e.cmd(s, "sleep")
	if err := forksafe.Start(sleeper); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(done) }()
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("sandboxed process survived aigate's death")
	}
}

// addHelperSandbox registers the helpers' one sandbox: the cgroup at dir,
// denying reads of pattern.
func addHelperSandbox(b *Backend, dir, pattern string) error {
	c, err := policy.Compile(&policy.Policy{DenyRead: rules(pattern)}, policy.Env{})
	if err != nil {
		return err
	}
	g, err := cgroup.Open(dir)
	if err != nil {
		return err
	}
	return b.Add(context.Background(), &enforce.Sandbox{ID: 1, Name: "helper", CgroupID: g.ID, CgroupPath: g.Path, Policy: c})
}

// The "backend" helper: aigate itself, with one sandbox denying args[1].
// Registered in a variable initialiser, which runs before the helper's init.
var _ = registerHelper("backend", func(args []string) string {
	b, err := Open(Options{})
	if err != nil {
		return err.Error()
	}
	if err := addHelperSandbox(b, args[0], args[1]); err != nil {
		return err.Error()
	}
	fmt.Println("ready")
	select {}
})

// TestAigateStopFreezesSandbox: aigate stopped (SIGSTOP, a debugger)
// answers nothing; once the guard has missed its heartbeat for guardStall
// it freezes the sandbox, and thaws it when aigate resumes (before
// guardRelease: TestStuckReaderReleasesGroup is what happens after).
func TestAigateStopFreezesSandbox(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.write(filepath.Join(e.project, "token"), "t")
	g, err := cgroup.Create("aigate-test", fmt.Sprintf("fanstop%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})
	s := &sbox{Sandbox: &enforce.Sandbox{CgroupPath: g.Path}, g: g}
	helper := e.cmd(nil, "backend", g.Path, secret)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := forksafe.Start(helper); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper backend: %q, %v", line, err)
	}
	sleeper := e.cmd(s, "sleep")
	if err := forksafe.Start(sleeper); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	frozen := func() bool {
		data, _ := os.ReadFile(filepath.Join(g.Path, "cgroup.events"))
		return strings.Contains(string(data), "frozen 1")
	}
	waitFrozen := func(want bool, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for frozen() != want {
			if time.Now().After(deadline) {
				t.Fatalf("sandbox frozen = %v after %v, want %v", !want, within, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Running: the heartbeat keeps the sandbox thawed past guardStall.
	time.Sleep(guardStall + time.Second)
	if frozen() {
		t.Fatal("the sandbox was frozen while aigate ran")
	}
	if err := helper.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFrozen(true, guardStall+5*time.Second)
	if err := helper.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFrozen(false, 5*time.Second)
}
