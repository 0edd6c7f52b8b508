//go:build linux

package escape

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// A raw client of the agent's API, run as the test user: this test binary
// re-executed with clientEnv set. It speaks the protocol directly, the way
// a hostile group member (or a sandboxed tool that reached the socket)
// would, instead of through `aigate run`, which never asks for what the
// agent must refuse.

const clientEnv = "AIGATE_ESCAPE_CLIENT"

func init() { testutil.HelperOps(clientEnv, clientOp) }

// clientOp runs one operation: its fields are the op, the socket, the
// home and the project root, then the op's arguments. It returns "ok ..."
// or "refused CODE: MESSAGE" or "error: ...".
func clientOp(f []string) string {
	if len(f) == 4 && f[0] == "tryloop" {
		tryLoop(f[1], f[2], f[3]) // never returns
	}
	if len(f) == 5 && f[0] == "tryloop" && f[4] == "child" {
		tryLoopChild(f[:4]) // never returns
	}
	if len(f) == 5 && f[0] == "handoff" {
		return handOff(f)
	}
	if len(f) == 5 && f[0] == "handoffchild" {
		return handOffChild(f)
	}
	if len(f) < 4 {
		return "error: short op"
	}
	op, sock, home, proj := f[0], f[1], f[2], f[3]
	req := api.CreateRequest{Home: home, ProjectRoot: proj, Command: []string{"escape-client"}}
	// OP-at-create: the same, with the pid in the create request (version
	// 3) instead of a place request after it.
	createPlace := createPlace
	if o, ok := strings.CutSuffix(op, "-at-create"); ok {
		op, createPlace = o, createPlacing
	}
	switch op {
	case "place": // create a sandbox and place pid (not ours, or not our child)
		pid, _ := strconv.Atoi(f[4])
		return createPlace(sock, req, pid)
	case "placechild": // the control: place a child of ours
		cmd := exec.Command("sleep", "600")
		if err := cmd.Start(); err != nil {
			return "error: " + err.Error()
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		before, err := ownSandboxes(sock)
		if err != nil {
			// Refused (inside a sandbox: TestEscapeNestedRun): the
			// create's own refusal is what is asked for.
			return createPlace(sock, req, cmd.Process.Pid)
		}
		res := createPlace(sock, req, cmd.Process.Pid)
		// The agent ends the sandbox once the connection is closed: wait
		// for it, so that the caller can count what is left.
		return res + waitSandboxes(sock, before)
	case "resandbox": // start a child in one sandbox, place it in a second
		before, err := ownSandboxes(sock)
		if err != nil {
			return "error: " + err.Error()
		}
		s, err := api.NewClient(sock).CreateSandbox(context.Background(), req)
		if err != nil {
			return "error: " + err.Error()
		}
		child, err := launch.Start(s, exec.Command("/bin/sleep", "600"))
		if err != nil {
			s.Close()
			return "error: " + err.Error()
		}
		res := createPlace(sock, req, child.Pid())
		_ = child.Signal(os.Kill)
		_, _ = child.Wait()
		s.Close()
		return res + waitSandboxes(sock, before)
	case "create": // hold n sandboxes, each running a command, then ask for one more
		n, _ := strconv.Atoi(f[4])
		var held []*api.Session
		defer func() {
			for _, s := range held {
				s.Close()
			}
		}()
		for i := range n {
			s, err := api.NewClient(sock).CreateSandbox(context.Background(), req)
			if err != nil {
				return fmt.Sprintf("error: sandbox %d of %d: %v", i+1, n, err)
			}
			held = append(held, s)
			// With a command placed, a sandbox lasts as long as it does;
			// an empty one ends after the agent's place timeout, which a
			// slow machine (the emulated VM) reaches before the last.
			c, err := launch.Start(s, exec.Command("/bin/sleep", "600"))
			if err != nil {
				return fmt.Sprintf("error: start in sandbox %d of %d: %v", i+1, n, err)
			}
			defer func() { _ = c.Signal(os.Kill); _, _ = c.Wait() }()
		}
		s, err := api.NewClient(sock).CreateSandbox(context.Background(), req)
		if err != nil {
			return refusal(err)
		}
		s.Close()
		return "ok created"
	case "createtrusted": // create a sandbox for the project file f[4], claiming it is trusted
		data, err := os.ReadFile(f[4])
		if err != nil {
			return "error: " + err.Error()
		}
		req.Project, req.Trust = &api.File{Path: f[4], Data: data}, "trusted"
		s, err := api.NewClient(sock).CreateSandbox(context.Background(), req)
		if err != nil {
			return refusal(err)
		}
		s.Close()
		return "ok warnings: " + strings.Join(s.Warnings, "; ")
	case "trust": // ask the agent to trust (or revoke) a project file: action path [sha256]
		t := api.TrustRequest{Action: f[4], Path: f[5]}
		if len(f) > 6 {
			t.SHA256 = f[6]
		}
		recs, err := api.NewClient(sock).Trust(context.Background(), t)
		if err != nil {
			return refusal(err)
		}
		return fmt.Sprintf("ok held %v entries %d", recs.Held, len(recs.Entries))
	case "policyaccept": // ask the agent to accept the content of f[5] as the global file f[4]
		data, err := os.ReadFile(f[5])
		if err != nil {
			return "error: " + err.Error()
		}
		st, err := api.NewClient(sock).Policy(context.Background(), api.PolicyRequest{Action: api.PolicyAccept, Home: home,
			Global: &api.File{Path: f[4], Data: data}})
		if err != nil {
			return refusal(err)
		}
		return fmt.Sprintf("ok held %v loosened %q", st.Held, st.Loosened)
	}
	return "error: unknown op " + op
}

// handOff connects to the agent, hands the connection to a child of its
// own (handOffChild, with the same fields) and writes its pid to DIR/pid:
// fields handoff SOCK HOME PROJ DIR. It returns at once; the child asks
// for a sandbox once DIR/go exists and writes the outcome to DIR/result.
func handOff(f []string) string {
	nc, err := net.Dial("unix", f[1])
	if err != nil {
		return "error: " + err.Error()
	}
	conn, err := nc.(*net.UnixConn).File()
	if err != nil {
		return "error: " + err.Error()
	}
	self, err := os.Executable()
	if err != nil {
		return "error: " + err.Error()
	}
	child := exec.Command(self)
	child.Env = append(os.Environ(), clientEnv+"=handoffchild "+strings.Join(f[1:], " "))
	child.ExtraFiles = []*os.File{conn}
	if err := child.Start(); err != nil {
		return "error: " + err.Error()
	}
	if err := writeWhole(filepath.Join(f[4], "pid"), strconv.Itoa(os.Getpid())); err != nil {
		return "error: " + err.Error()
	}
	return "ok handed"
}

// handOffChild waits for DIR/go, then asks for a sandbox on the connection
// its parent made (descriptor 3) and writes the outcome to DIR/result.
func handOffChild(f []string) string {
	dir := f[4]
	res := "error: DIR/go never appeared"
	for range 1200 {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			res = askOn(f[2], f[3])
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = writeWhole(filepath.Join(dir, "result"), res+"\n")
	return res
}

// writeWhole writes a file that its readers, which poll for it, see
// whole or not at all: written beside it and renamed in (with
// os.WriteFile the test's shell once read the result file empty, just
// after its creation).
func writeWhole(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func askOn(home, proj string) string {
	nc, err := net.FileConn(os.NewFile(3, "agent"))
	if err != nil {
		return "error: " + err.Error()
	}
	defer nc.Close()
	req := api.CreateRequest{Home: home, ProjectRoot: proj, Command: []string{"escape-client"}}
	if err := exchange(api.NewConn(nc), &api.Request{Op: api.OpCreate, Create: &req}); err != nil {
		return refusal(err)
	}
	return "ok created"
}

// createPlace creates a sandbox on a fresh connection and asks it to place
// pid, as the exec helper's client would.
func createPlace(sock string, req api.CreateRequest, pid int) string {
	nc, err := net.Dial("unix", sock)
	if err != nil {
		return "error: " + err.Error()
	}
	defer nc.Close()
	c := api.NewConn(nc)
	if err := exchange(c, &api.Request{Op: api.OpCreate, Create: &req}); err != nil {
		return refusal(err)
	}
	if err := exchange(c, &api.Request{Op: api.OpPlace, Place: &api.PlaceRequest{PID: pid}}); err != nil {
		return refusal(err)
	}
	return "ok placed"
}

// createPlacing asks for a sandbox with pid to be placed while it is
// built (api.CreateRequest.Place), as aigate run's client does.
func createPlacing(sock string, req api.CreateRequest, pid int) string {
	nc, err := net.Dial("unix", sock)
	if err != nil {
		return "error: " + err.Error()
	}
	defer nc.Close()
	req.Place = &api.PlaceRequest{PID: pid}
	if err := exchange(api.NewConn(nc), &api.Request{Op: api.OpCreate, Create: &req}); err != nil {
		return refusal(err)
	}
	return "ok placed"
}

// ownSandboxes counts the sandboxes of the caller.
func ownSandboxes(sock string) (int, error) {
	l, err := api.NewClient(sock).List(context.Background())
	return len(l), err
}

// waitSandboxes waits until the caller has at most n sandboxes, and says
// so when they do not end in time.
func waitSandboxes(sock string, n int) string {
	for range 400 {
		if got, err := ownSandboxes(sock); err == nil && got <= n {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf(" (but the caller's sandboxes did not end: more than %d after 20 s)", n)
}

func exchange(c *api.Conn, req *api.Request) error {
	req.V = api.Version
	if err := c.Write(req, 10*time.Second); err != nil {
		if e := c.RefusedBeforeRequest(); e != nil {
			return e
		}
		return err
	}
	var resp api.Response
	if err := c.Read(&resp, time.Now().Add(30*time.Second)); err != nil {
		return err
	}
	if !resp.OK {
		if resp.Error == nil {
			return errors.New("refused without an error")
		}
		return resp.Error
	}
	return nil
}

func refusal(err error) string {
	var e *api.Error
	if errors.As(err, &e) {
		return fmt.Sprintf("refused %s: %s", e.Code, e.Message)
	}
	return "error: " + err.Error()
}

var (
	clientOnce sync.Once
	clientBin  string
	clientErr  error
)

// clientBinary returns a copy of the test binary that the test user may
// execute: where go test built it, the user cannot reach it.
func clientBinary(t *testing.T) string {
	t.Helper()
	clientOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			clientErr = err
			return
		}
		clientBin = filepath.Join(machine.dir, "escape-client")
		clientErr = copyFile(self, clientBin, 0o755)
	})
	if clientErr != nil {
		t.Fatal(clientErr)
	}
	return clientBin
}

// client runs one op of the raw client as the test user, against b's agent,
// with b's home and project.
func (b *box) client(op string, args ...string) string {
	b.t.Helper()
	return b.clientAt(b.home, b.proj, op, args...)
}

// clientAt is client with another home and project root in the request.
func (b *box) clientAt(home, proj, op string, args ...string) string {
	b.t.Helper()
	bin := clientBinary(b.t)
	fields := append([]string{op, b.agent.sock, home, proj}, args...)
	cmd := b.asUser(exec.Command(bin))
	cmd.Env = append(cmd.Env, clientEnv+"="+strings.Join(fields, " "))
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.t.Fatalf("client %s: %v\n%s", op, err, out)
	}
	return strings.TrimSpace(string(out))
}
