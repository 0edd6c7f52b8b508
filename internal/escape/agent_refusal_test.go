//go:build linux

package escape

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	aigateagent "github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// The agent runs as root and acts for any member of its group: each of its
// refusals below is a boundary. Each test asks as the unprivileged user,
// directly on the socket, for what the agent must refuse, and checks both
// the refusal and that nothing happened (the process stayed where it was,
// nothing read the secret).

// TestEscapeNestedRun: the sandboxed tool runs `aigate run --audit` to get
// an audit-mode sandbox (which only reports) for `cat .env`. aigate itself
// stops at once inside a sandbox and says why; that is a courtesy of the
// client, which the tool could skip, so the boundary is the agent: a raw
// client inside the sandbox asks it directly for a sandbox and a place,
// and the agent refuses every request that comes from inside a sandbox.
// The policy lets the sandbox reach the agent's socket (allow_unix), so
// that it is the agent's refusal that is tested and not the unix socket
// rule in front of it. Behind the refusal, place would still refuse the
// child (it is in a sandbox): the test asks for the gate's own message so
// that each line is tested.
func TestEscapeNestedRun(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.config(b.read("~/.aigate/config.yaml") + "\nallow_unix:\n  - " + b.agent.sock + "\n")
		r := b.run(nil, machine.bin, "run", "--audit", "--", "cat", ".env")
		if strings.Contains(r.stdout+r.stderr, "sk-escape-test-secret") {
			t.Fatalf("the nested audit run read the secret:\n%s", r)
		}
		if r.code == 0 || !strings.Contains(r.stderr, "inside the aigate sandbox") {
			t.Errorf("the nested run did not stop at once, saying why:\n%s", r)
		}
		fields := strings.Join([]string{"placechild", b.agent.sock, b.home, b.proj}, " ")
		r = b.run(nil, "env", clientEnv+"="+fields, clientBinary(t))
		if strings.Contains(r.stdout, "ok placed") || !strings.Contains(r.stdout, "requests from inside a sandbox are refused") {
			t.Errorf("a raw client inside the sandbox was not refused by the agent:\n%s", r)
		}
	})
}

// TestEscapeAgentPlace: place moves a process into the caller's new
// sandbox. It must be the caller's own child and not sandboxed already:
// placing another user's process, or any process of one's own that is not
// a child (e.g. one in another sandbox, or the user's shell), would let a
// member move what is not theirs, or move a sandboxed process into a looser
// sandbox. The control places a child of the caller and succeeds. Each is
// asked both ways: with a place request after the create, and with the
// pid in the create request (protocol version 3, how aigate run asks),
// where a refusal also leaves no sandbox behind.
func TestEscapeAgentPlace(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		for _, way := range []string{"", "-at-create"} {
			if got := b.client("placechild" + way); got != "ok placed" {
				t.Fatalf("control: placing the client's own child (%s): %s", way, got)
			}
			before := sandboxesOf(t, b)

			root := exec.Command("sleep", "600")
			if err := root.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = root.Process.Kill(); _ = root.Wait() })
			got := b.client("place"+way, strconv.Itoa(root.Process.Pid))
			wantRefused(t, "another user's process"+way, got, "is not yours")
			unsandboxed(t, root.Process.Pid)

			own := b.outside("sleep", "600")
			got = b.client("place"+way, strconv.Itoa(own.Process.Pid))
			wantRefused(t, "the user's process that is not the client's child"+way, got, "is not your child")
			unsandboxed(t, own.Process.Pid)

			got = b.client("resandbox" + way)
			wantRefused(t, "the client's child already in a sandbox"+way, got, "is already in a sandbox")
			if way != "" {
				if after := sandboxesOf(t, b); after > before {
					t.Errorf("%d sandboxes of the user after the refused creates, %d before", after, before)
				}
			}
		}
	})
}

// TestEscapeAgentPeerPidReused: the agent judges who asks by the process
// that connected. A client inside the sandbox connects, hands the
// connection to its child and exits; once it is reaped an outside process
// is given its pid (as root: ns_last_pid), and only then does the child
// ask for a sandbox, which a look at /proc/PID would take for a request
// from outside. The agent refuses it, saying the process that connected
// has exited, and creates nothing.
func TestEscapeAgentPeerPidReused(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.config(b.read("~/.aigate/config.yaml") + "\nallow_unix:\n  - " + b.agent.sock + "\n")
		attempt := 0
		testutil.PidReuse(t, func() bool {
			attempt++
			return agentPeerPidReused(t, b, b.path(fmt.Sprintf("handoff%d", attempt)))
		})
	})
}

// agentPeerPidReused is one attempt of TestEscapeAgentPeerPidReused in
// dir; false when another process took the pid first.
func agentPeerPidReused(t *testing.T, b *box, dir string) bool {
	b.mkdir(dir)
	fields := strings.Join([]string{"handoff", b.agent.sock, b.home, b.proj, dir}, " ")
	script := fmt.Sprintf(`env %s=%q %s || exit 1
for i in $(seq 1200); do [ -e %s/result ] && break; sleep 0.05; done
cat %s/result`, clientEnv, fields, clientBinary(t), dir, dir)
	done := make(chan result, 1)
	go func() { done <- b.sh(script) }()

	// The client that connected has written its pid and is reaped
	// (its shell waits for it).
	var pid int
	for deadline := time.Now().Add(runLimit); ; {
		if data, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			if pid, _ = strconv.Atoi(string(data)); pid > 0 {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
					break
				}
			}
		}
		select {
		case r := <-done:
			t.Fatalf("the run ended before the client that connected was reaped:\n%s", r)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client that connected did not exit (pid %d)", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The user's own process outside (a shell, an editor) gets it.
	if !testutil.StartWithPID(t, pid, func() *exec.Cmd { return b.asUser(exec.Command("sleep", "600")) }) {
		// Let the child ask (its pid is nobody's: refused) and end the run.
		_ = os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
		<-done
		return false
	}
	unsandboxed(t, pid)
	before := sandboxesOf(t, b)
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if strings.Contains(r.stdout, "ok created") || !strings.Contains(r.stdout, "refused forbidden") || !strings.Contains(r.stdout, "has exited") {
		t.Fatalf("a request on a connection handed on by a process that exited, its pid now outside, was not refused as such:\n%s", r)
	}
	if after := sandboxesOf(t, b); after > before {
		t.Errorf("%d sandboxes of the user after the refused request, %d before", after, before)
	}
	return true
}

// sandboxesOf counts the sandboxes of b's user that b's agent holds.
func sandboxesOf(t *testing.T, b *box) int {
	t.Helper()
	l, err := api.NewClient(b.agent.sock).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

// TestEscapeAgentForeignPaths: the agent walks the request's home and
// project root as root and marks every directory in them; a member naming
// a tree it cannot read itself (root's home here) is refused, before any
// walk, and nothing runs.
func TestEscapeAgentForeignPaths(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		secret := b.t.TempDir() // root's, 0700
		got := b.clientAt(secret, b.proj, "placechild")
		wantRefused(t, "another user's home", got, "home "+secret)
		got = b.clientAt(b.home, secret, "placechild")
		wantRefused(t, "another user's project", got, "project root "+secret)
		if !strings.HasPrefix(got, "refused forbidden:") {
			t.Errorf("refused with %q, want code forbidden", got)
		}
	})
}

// TestEscapeAgentSandboxLimit: a user holds at most 32 sandboxes (each
// costs the agent marks, maps and a cgroup); the next is refused.
func TestEscapeAgentSandboxLimit(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		got := b.client("create", strconv.Itoa(aigateagent.DefaultMaxSandboxesPerUser))
		wantRefused(t, "one sandbox over the limit", got, "the limit")
		if !strings.HasPrefix(got, "refused limit:") {
			t.Errorf("refused with %q, want code limit", got)
		}
		// The client is gone; its sandboxes end shortly after. The next
		// test needs them gone.
		c := api.NewClient(b.agent.sock)
		deadline := time.Now().Add(runLimit)
		for {
			l, err := c.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(l) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d sandboxes still there after their client exited", len(l))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func wantRefused(t *testing.T, what, got, msg string) {
	t.Helper()
	if !strings.HasPrefix(got, "refused ") || !strings.Contains(got, msg) {
		t.Errorf("%s: the agent answered %q, want a refusal saying %q", what, got, msg)
	}
}

// unsandboxed fails unless pid is outside every sandbox.
func unsandboxed(t *testing.T, pid int) {
	t.Helper()
	cg, err := cgroup.ProcessCgroup(pid)
	if err != nil {
		t.Fatalf("cgroup of %d: %v", pid, err)
	}
	if cgroup.Within(cg, "/"+sandbox.DefaultParent) {
		t.Errorf("process %d was moved into %s", pid, cg)
	}
}
