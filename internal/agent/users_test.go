//go:build linux

package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// The test binary doubles as an unprivileged client: the agent must see a
// different uid through SO_PEERCRED, which only another process can give.
const clientEnv = "AIGATE_AGENT_TEST_CLIENT"

func TestMain(m *testing.M) {
	if mode := os.Getenv(clientEnv); mode != "" {
		os.Exit(runTestClient(mode, os.Getenv("AIGATE_AGENT_TEST_SOCKET"), os.Args[1:]))
	}
	os.Exit(m.Run())
}

// probeResult is what the "probe" client found.
type probeResult struct {
	Listed      int    `json:"listed"`
	EndCode     string `json:"end_code"`
	WatchCode   string `json:"watch_code"`
	WatchEvents int    `json:"watch_events"`
	CreateOwner string `json:"create_owner_code"`
}

func runTestClient(mode, sock string, args []string) int {
	c := api.NewClient(sock)
	ctx := context.Background()
	switch mode {
	case "hold":
		// Create a sandbox, run sleep in it, print its name and then the
		// path of each event, until stdin closes.
		home, _ := os.MkdirTemp("", "home")
		s, err := c.CreateSandbox(ctx, api.CreateRequest{Home: home, ProjectRoot: home})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		if _, err := launch.Start(s, exec.Command("/bin/sleep", "60")); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println(s.Sandbox.Name)
		go func() { io.Copy(io.Discard, os.Stdin); s.Close(); os.Exit(0) }()
		for e := range s.Events() {
			fmt.Println(e.Path)
		}
		return 0
	case "flood":
		// Dial args[0] connections without sending anything and hold them
		// until stdin closes; print how many were admitted (no answer
		// yet) and the messages of the refused ones.
		n, _ := strconv.Atoi(args[0])
		var r floodResult
		for i := 0; i < n; i++ {
			nc, err := net.Dial("unix", sock)
			if err != nil {
				r.Refused = append(r.Refused, err.Error())
				continue
			}
			defer nc.Close()
			var resp api.Response
			err = api.NewConn(nc).Read(&resp, time.Now().Add(300*time.Millisecond))
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				r.Admitted++
			case err != nil:
				r.Refused = append(r.Refused, err.Error())
			default:
				r.Refused = append(r.Refused, resp.Error.Code+": "+resp.Error.Message)
			}
		}
		json.NewEncoder(os.Stdout).Encode(r)
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "handoff":
		// Connect, hand the connection to a child (which asks for a
		// sandbox once a line arrives on stdin and prints the outcome's
		// code and message), and exit without waiting for it.
		nc, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		f, err := nc.(*net.UnixConn).File()
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), clientEnv+"=handoff-child")
		child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
		child.ExtraFiles = []*os.File{f}
		if err := child.Start(); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		return 0
	case "handoff-child":
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		nc, err := net.FileConn(os.NewFile(3, "agent"))
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		c := api.NewConn(nc)
		home, _ := os.MkdirTemp("", "home")
		req := api.Request{V: api.Version, Op: api.OpCreate, Create: &api.CreateRequest{Home: home, ProjectRoot: home}}
		// An agent that refused the connection at once has closed it:
		// the write fails, and the refusal is there to read.
		werr := c.Write(&req, 5*time.Second)
		var resp api.Response
		if err := c.Read(&resp, time.Now().Add(30*time.Second)); err != nil {
			fmt.Println("error:", errors.Join(werr, err))
			return 1
		}
		if resp.Error != nil {
			fmt.Println(resp.Error.Code + ": " + resp.Error.Message)
			return 0
		}
		fmt.Println("ok created", resp.Sandbox.Name)
		return 0
	case "policyaccept":
		// Accept args[2] as the content of the global file args[1] of
		// home args[0]; print the outcome's code.
		_, err := c.Policy(ctx, api.PolicyRequest{Action: api.PolicyAccept, Home: args[0],
			Global: &api.File{Path: args[1], Data: []byte(args[2])}})
		fmt.Println(code(err))
		return 0
	case "probe":
		var r probeResult
		l, err := c.List(ctx)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		r.Listed = len(l)
		r.EndCode = code(c.End(ctx, args[0]))
		_, err = c.Watch(ctx, api.WatchRequest{Sandbox: args[0]})
		r.WatchCode = code(err)
		other := uint32(0)
		_, err = c.CreateSandbox(ctx, api.CreateRequest{Home: "/", ProjectRoot: "/", Owner: &other})
		r.CreateOwner = code(err)
		w, err := c.Watch(ctx, api.WatchRequest{})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("watching")
		// Count what arrives until the test closes stdin.
		n := make(chan int)
		go func() {
			k := 0
			for {
				if _, _, err := w.Next(); err != nil {
					n <- k
					return
				}
				k++
			}
		}()
		io.Copy(io.Discard, os.Stdin)
		w.Close()
		r.WatchEvents = <-n
		json.NewEncoder(os.Stdout).Encode(r)
		return 0
	}
	return 2
}

// floodResult is what the "flood" client got.
type floodResult struct {
	Admitted int      `json:"admitted"`
	Refused  []string `json:"refused"`
}

func code(err error) string {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return err.Error()
	}
	return "ok"
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// testUser creates a system user in group and removes it at cleanup.
func testUser(t *testing.T, name, group string) (uid, gid uint32) {
	t.Helper()
	run(t, "useradd", "--system", "--no-create-home", "--gid", group, "--shell", "/usr/sbin/nologin", name)
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := strconv.Atoi(u.Uid)
	b, _ := strconv.Atoi(u.Gid)
	return uint32(a), uint32(b)
}

// TestTwoUsers: two real unprivileged users share the agent; neither can
// see, end or watch the other's sandbox, and the sandbox of the first
// (created and placed without privileges) confines its command.
func TestTwoUsers(t *testing.T) {
	ta, as, uidA, uidB := twoUsers(t, nil)

	// A holds a sandbox.
	holdA := as(uidA, "hold")
	inA, _ := holdA.StdinPipe()
	outA, _ := holdA.StdoutPipe()
	if err := holdA.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inA.Close(); holdA.Wait() })
	linesA := bufio.NewScanner(outA)
	if !linesA.Scan() {
		t.Fatal("client A printed nothing")
	}
	name := linesA.Text()
	list, err := ta.client.List(context.Background())
	if err != nil || len(list) != 1 || list[0].Name != name || list[0].Owner != uidA || !list[0].Placed {
		t.Fatalf("root's list = %+v, %v; want A's sandbox %q", list, err, name)
	}
	// A's command really runs in the sandbox, placed without privileges.
	pids, _ := mustGroup(t, ta.parent, name).PIDs()
	if len(pids) != 1 {
		t.Fatalf("sandbox %s holds %v, want A's sleep", name, pids)
	}

	// B probes, and watches while A's sandbox produces events.
	probe := as(uidB, "probe", name)
	inB, _ := probe.StdinPipe()
	outB, _ := probe.StdoutPipe()
	if err := probe.Start(); err != nil {
		t.Fatal(err)
	}
	linesB := bufio.NewScanner(outB)
	if !linesB.Scan() || linesB.Text() != "watching" {
		t.Fatalf("client B: %q", linesB.Text())
	}
	sb, _ := ta.be.sandbox(list[0].ID)
	for i := 0; i < 5; i++ {
		ta.be.deny(events.Event{CgroupID: sb.CgroupID, Kind: events.KindFile, Op: events.OpRead, Path: fmt.Sprintf("/home/a/.env%d", i)}, false)
	}
	for i := 0; i < 5; i++ {
		if !linesA.Scan() || linesA.Text() != fmt.Sprintf("/home/a/.env%d", i) {
			t.Fatalf("A's event %d: %q", i, linesA.Text())
		}
	}
	time.Sleep(200 * time.Millisecond) // B would have had them by now
	inB.Close()
	var r probeResult
	if !linesB.Scan() || json.Unmarshal(linesB.Bytes(), &r) != nil {
		t.Fatalf("client B: %q", linesB.Text())
	}
	probe.Wait()
	want := probeResult{Listed: 0, EndCode: api.CodeNotFound, WatchCode: api.CodeNotFound, WatchEvents: 0, CreateOwner: api.CodeForbidden}
	if r != want {
		t.Fatalf("B saw %+v, want %+v", r, want)
	}
	// A's sandbox survived B's attempt to end it.
	if l, _ := ta.client.List(context.Background()); len(l) != 1 {
		t.Fatalf("A's sandbox is gone: %+v", l)
	}
}

func mustGroup(t *testing.T, parent, name string) *cgroup.Group {
	g, err := cgroup.Open(filepath.Join(mustMount(t), parent, name))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// usersClient starts this test binary as a client of the agent, as uid.
type usersClient func(uid uint32, mode string, args ...string) *exec.Cmd

// twoUsers creates a group and two system users in it, and starts an
// agent (its config changed by edit) whose socket they may use.
func twoUsers(t *testing.T, edit func(*Config)) (ta *testAgent, as usersClient, uidA, uidB uint32) {
	t.Helper()
	testutil.HostOnly(t)
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("useradd"); err != nil {
		testutil.SkipUnlessKernel(t, "needs useradd to create test users")
	}
	suffix := strconv.Itoa(os.Getpid() % 100000)
	group := "aigt" + suffix
	run(t, "groupadd", "--system", group)
	t.Cleanup(func() { _ = exec.Command("groupdel", group).Run() })
	var gid uint32
	uidA, gid = testUser(t, "aigta"+suffix, group)
	uidB, _ = testUser(t, "aigtb"+suffix, group)

	// A directory both users can reach, holding the socket and a copy of
	// this test binary (go test's build directory is private to root).
	dir, err := os.MkdirTemp("", "aigate-agent-users")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	bin := filepath.Join(dir, "agent.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ta = startAgentWith(t, dir, group, edit)
	if fi, err := os.Stat(ta.Socket()); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, %v; want 0660", fi.Mode(), err)
	}

	as = func(uid uint32, mode string, args ...string) *exec.Cmd {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), clientEnv+"="+mode, "AIGATE_AGENT_TEST_SOCKET="+ta.Socket())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{gid}}}
		cmd.Stderr = os.Stderr
		return cmd
	}

	return ta, as, uidA, uidB
}

// TestConnLimits: one user dialling the socket in a loop (say, a sandboxed
// tool running as that user) takes at most its share of the agent's
// connections; the other users share the rest, and root always gets in.
func TestConnLimits(t *testing.T) {
	old := requestTimeout
	requestTimeout = time.Minute // the floods hold their connections silently
	t.Cleanup(func() { requestTimeout = old })
	ta, as, uidA, uidB := twoUsers(t, func(c *Config) { c.MaxConnsPerUser = 4; c.MaxConns = 6 })

	flood := func(uid uint32, n int) floodResult {
		t.Helper()
		cmd := as(uid, "flood", strconv.Itoa(n))
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Close(); cmd.Wait() })
		var r floodResult
		if err := json.NewDecoder(out).Decode(&r); err != nil {
			t.Fatalf("flood client of uid %d: %v", uid, err)
		}
		return r
	}
	wantRefused := func(r floodResult, n int, msg string) {
		t.Helper()
		if len(r.Refused) != n {
			t.Fatalf("refused %d, want %d: %+v", len(r.Refused), n, r)
		}
		for _, m := range r.Refused {
			if !strings.HasPrefix(m, api.CodeLimit+": ") || !strings.Contains(m, msg) {
				t.Fatalf("refusal %q, want a %s error saying %q", m, api.CodeLimit, msg)
			}
		}
	}

	// B takes its 4, no more.
	b := flood(uidB, 10)
	if b.Admitted != 4 {
		t.Fatalf("B got %d connections, want its limit of 4: %+v", b.Admitted, b)
	}
	wantRefused(b, 6, fmt.Sprintf("uid %d has 4 connections", uidB))
	// A gets the 2 left of the 6 users may hold.
	a := flood(uidA, 3)
	if a.Admitted != 2 {
		t.Fatalf("A got %d connections, want the 2 left: %+v", a.Admitted, a)
	}
	wantRefused(a, 1, "6 connections of users open")
	// Root is not counted, and is served.
	if _, err := ta.client.Status(context.Background()); err != nil {
		t.Fatalf("root's status with every user slot taken: %v", err)
	}
}
