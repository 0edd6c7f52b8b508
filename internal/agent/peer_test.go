//go:build linux

package agent

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestPeerPidReusedRefused: a process inside a sandbox connects to the
// agent, hands the connection to its child (inside too) and exits; its pid
// is then given to a process outside every sandbox. The child's request
// for a sandbox must still be refused as one from inside: the agent knows
// the process that connected is gone, and does not take the process that
// now has its pid for the one that asks. Nothing is created. In the VM
// harness it runs on 6.1 (no SO_PEERPIDFD: the pidfd opened at accept) and
// 6.12 (SO_PEERPIDFD); "before 6.5" forces the former on newer hosts.
func TestPeerPidReusedRefused(t *testing.T) {
	t.Run("this kernel", func(t *testing.T) { testutil.PidReuse(t, func() bool { return testPeerPidReused(t) }) })
	t.Run("before 6.5", func(t *testing.T) {
		t.Setenv("AIGATE_TEST_NO_PEERPIDFD", "1")
		testutil.PidReuse(t, func() bool { return testPeerPidReused(t) })
	})
}

// testPeerPidReused is one attempt; false when another process took the
// pid first.
func testPeerPidReused(t *testing.T) bool {
	ta := startAgent(t, "", "")
	ctx := context.Background()
	s, err := ta.client.CreateSandbox(ctx, createReq(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	h := startHandoff(t, ta, s, nil)
	first, pid := h.first, h.first.Pid()
	if code, err := first.Wait(); err != nil || code != 0 {
		t.Fatalf("the client that connected: exit %d, %v", code, err)
	}
	// Reaped: its pid is free. An outside process takes it.
	if !testutil.StartWithPID(t, pid, func() *exec.Cmd { return exec.Command("sleep", "60") }) {
		return false // the child holding the connection is ended at cleanup
	}
	if in, err := ta.sandboxed(pid); err != nil || in {
		t.Fatalf("pid %d now: in a sandbox %v, %v; want a process outside", pid, in, err)
	}

	line := h.ask(t)
	if !strings.HasPrefix(line, api.CodeForbidden+":") || !strings.Contains(line, "has exited") {
		t.Errorf("request on a connection whose process exited, its pid now outside: %q; want %s saying the process that connected has exited", line, api.CodeForbidden)
	}
	if n := ta.sandboxCount(); n != 1 {
		t.Errorf("%d sandboxes after the refused request, want only the test's own", n)
	}
	return true
}

// TestPeerPidReusedBeforeAcceptRefused: as TestPeerPidReusedRefused, but
// the client inside the sandbox connects, hands the connection to its
// child and is reaped, and its pid given to a process outside, all before
// the agent asks who connected (the agent is held between its accept and
// that question). The child's request must be refused, saying the process
// that connected has exited, and nothing created: with SO_PEERPIDFD the
// socket names the process that is gone; without it ("before 6.5", as on
// Debian 12's 6.1, and forced on newer hosts) the process now holding the
// pid does not hold the connection.
func TestPeerPidReusedBeforeAcceptRefused(t *testing.T) {
	t.Run("this kernel", func(t *testing.T) { testutil.PidReuse(t, func() bool { return testPeerPidReusedBeforeAccept(t) }) })
	t.Run("before 6.5", func(t *testing.T) {
		t.Setenv("AIGATE_TEST_NO_PEERPIDFD", "1")
		testutil.PidReuse(t, func() bool { return testPeerPidReusedBeforeAccept(t) })
	})
}

// testPeerPidReusedBeforeAccept is one attempt; false when another
// process took the pid first.
func testPeerPidReusedBeforeAccept(t *testing.T) bool {
	var armed atomic.Bool
	accepted := make(chan struct{}, 1)
	hold := make(chan struct{})
	ta := startAgentWith(t, "", "", func(c *Config) {
		c.beforePeer = func() {
			if armed.CompareAndSwap(true, false) {
				accepted <- struct{}{}
				<-hold
			}
		}
	})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release) // before the agent's cleanup closes it
	ctx := context.Background()
	s, err := ta.client.CreateSandbox(ctx, createReq(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	h := startHandoff(t, ta, s, func() { armed.Store(true) })
	first, pid := h.first, h.first.Pid()
	select {
	case <-accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not accept the client's connection")
	}
	if code, err := first.Wait(); err != nil || code != 0 {
		t.Fatalf("the client that connected: exit %d, %v", code, err)
	}
	// Reaped: its pid is free. An outside process takes it, and only then
	// does the agent ask who connected.
	if !testutil.StartWithPID(t, pid, func() *exec.Cmd { return exec.Command("sleep", "60") }) {
		return false // the held accept and the child are released at cleanup
	}
	if in, err := ta.sandboxed(pid); err != nil || in {
		t.Fatalf("pid %d now: in a sandbox %v, %v; want a process outside", pid, in, err)
	}
	release()

	line := h.ask(t)
	if !strings.HasPrefix(line, api.CodeForbidden+":") || !strings.Contains(line, "has exited") {
		t.Errorf("request on a connection whose process exited before the accept, its pid now outside: %q; want %s saying the process that connected has exited", line, api.CodeForbidden)
	}
	if n := ta.sandboxCount(); n != 1 {
		t.Errorf("%d sandboxes after the refused request, want only the test's own", n)
	}
	return true
}

// handoff is a client in a sandbox that connects to the agent, hands the
// connection to its child and exits (clientEnv "handoff"); the child asks
// for a sandbox when told to.
type handoff struct {
	first *sandbox.Child // the client that connected
	goIn  *os.File       // the child's stdin: "go" makes it ask
	said  *os.File       // what the child answers
}

// startHandoff starts the client in s; before runs just before it starts.
// The pipes close at cleanup, which ends a child that was never told to go.
func startHandoff(t *testing.T, ta *testAgent, s *api.Session, before func()) *handoff {
	t.Helper()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdinW.Close() })
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { outR.Close() })
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), clientEnv+"=handoff", "AIGATE_AGENT_TEST_SOCKET="+ta.Socket())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, outW, outW
	if before != nil {
		before()
	}
	first, err := launch.Start(s, cmd)
	stdinR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Signal(syscall.SIGKILL) })
	return &handoff{first: first, goIn: stdinW, said: outR}
}

// ask tells the child to make its request and returns its answer line.
func (h *handoff) ask(t *testing.T) string {
	t.Helper()
	if _, err := h.goIn.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(h.said).ReadString('\n')
	if err != nil {
		t.Fatalf("the child holding the connection said nothing: %v", err)
	}
	return strings.TrimSpace(line)
}
