//go:build linux

package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/testutil/testcgroup"
)

type testAgent struct {
	*Agent
	be     *fakeBackend
	client *api.Client
	parent string
}

// startAgent runs an agent with a fake backend on real cgroups, below a
// parent cgroup of its own, with its socket in dir ("" for a temporary one).
func startAgent(t testing.TB, dir, group string) *testAgent {
	t.Helper()
	return startAgentWith(t, dir, group, nil)
}

// startAgentWith is startAgent with the config changed by edit first.
func startAgentWith(t testing.TB, dir, group string, edit func(*Config)) *testAgent {
	t.Helper()
	parent := testParent(t)
	if dir == "" {
		dir = t.TempDir()
	}
	be := newFake()
	cfg := Config{
		Backend: be,
		Socket:  filepath.Join(dir, "aigate.sock"),
		Group:   group,
		Parent:  parent,
		Build:   "test",
		Log:     testLog(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Serve(t, a.Serve, a.Close)
	return &testAgent{Agent: a, be: be, client: api.NewClient(a.Socket()), parent: parent}
}

// testParent returns a parent cgroup (below the cgroup v2 mount) for one
// test's sandboxes. Each test has its own, and its cleanup, which runs
// after the agent's, kills and removes whatever is left in it: a sandbox
// one test failed to remove is reported there and cannot make the tests
// after it fail.
func testParent(t testing.TB) string {
	t.Helper()
	parent, _ := testcgroup.Parent(t, "aigate-agent-test")
	return parent
}

// testLog reports the agent's warnings and errors in the test's log, so
// that a failure shows what the agent saw (say, why a sandbox could not be
// removed). Once the test is over, they go nowhere.
func testLog(t testing.TB) *zap.Logger {
	var mu sync.Mutex
	over := false
	t.Cleanup(func() { mu.Lock(); over = true; mu.Unlock() })
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	ws := zapcore.AddSync(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if !over {
			t.Log(strings.TrimSpace(string(p)))
		}
		return len(p), nil
	}))
	return zap.New(zapcore.NewCore(enc, ws, zap.WarnLevel))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// sleepingSandbox creates a sandbox of createReq in ta, starts `sleep 60`
// in it and returns its session, the child and the backend's sandbox.
func sleepingSandbox(t *testing.T, ta *testAgent) (*api.Session, *sandbox.Child, enforce.Sandbox) {
	t.Helper()
	s, err := ta.client.CreateSandbox(context.Background(), createReq(t))
	if err != nil {
		t.Fatal(err)
	}
	child, err := launch.Start(s, exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	sb, ok := ta.be.sandbox(s.Sandbox.ID)
	if !ok {
		t.Fatalf("backend does not know sandbox %s", s.Sandbox.Name)
	}
	return s, child, sb
}

func createReq(t *testing.T) api.CreateRequest {
	home := t.TempDir()
	return api.CreateRequest{Home: home, ProjectRoot: home, Command: []string{"sleep", "60"}}
}

func TestStatusAndLifecycle(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	ctx := context.Background()
	st, err := ta.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Backend != "fake" || st.PID != os.Getpid() || st.Sandboxes != 0 {
		t.Fatalf("status = %+v", st)
	}
	s, err := ta.client.CreateSandbox(ctx, createReq(t))
	if err != nil {
		t.Fatal(err)
	}
	child, err := launch.Start(s, exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	cg, err := cgroup.ProcessCgroup(child.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if want := "/" + ta.parent + "/" + s.Sandbox.Name; cg != want {
		t.Fatalf("child runs in %s, want %s", cg, want)
	}
	// The helper exec'ed the command in the same process.
	waitFor(t, "the helper execs sleep", func() bool {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", child.Pid()))
		return strings.HasSuffix(exe, "/sleep")
	})
	list, err := ta.client.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != s.Sandbox.Name || !list[0].Placed || list[0].Procs != 1 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	// The command exits: the agent notices the empty cgroup and removes it.
	_ = child.Signal(os.Kill)
	if code, _ := child.Wait(); code != 128+9 {
		t.Errorf("exit code %d, want 137", code)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end after the command exited")
	}
	if e, err := s.Result(); err != nil || e.Reason != "empty" {
		t.Fatalf("session ended with %+v, %v; want reason empty", e, err)
	}
	if _, ok := ta.be.sandbox(s.Sandbox.ID); ok {
		t.Error("backend still enforces the removed sandbox")
	}
	if list, _ := ta.client.List(ctx); len(list) != 0 {
		t.Errorf("list after exit = %+v", list)
	}
}

// A client that dies before placing its command, or after, takes its
// sandbox with it: nothing is left running or allocated.
func TestClientGoneEndsSandbox(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	ctx := context.Background()
	s, err := ta.client.CreateSandbox(ctx, createReq(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	waitFor(t, "sandbox removed after its client hung up", func() bool {
		l, _ := ta.client.List(ctx)
		return len(l) == 0
	})

	s, err = ta.client.CreateSandbox(ctx, createReq(t))
	if err != nil {
		t.Fatal(err)
	}
	child, err := launch.Start(s, exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(mustMount(t), ta.parent, s.Sandbox.Name)
	s.Close() // the run process "dies": its connection closes
	done := make(chan struct{})
	go func() { child.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the command survived its session")
	}
	waitFor(t, "cgroup removed", func() bool { _, err := os.Stat(path); return os.IsNotExist(err) })
	waitFor(t, "backend entry removed", func() bool { _, ok := ta.be.sandbox(s.Sandbox.ID); return !ok })
	if u := ta.be.unconfinedTasks(); len(u) > 0 {
		t.Fatalf("tasks were in %v while its enforcement was removed", u)
	}
}

func mustMount(t *testing.T) string {
	m, err := cgroup.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEventsInOrder: N sandboxes, M events each, emitted interleaved; each
// session gets exactly its own, in order, with the agent's annotations; a
// root watcher gets all of them in backend order; a kind filter works.
func TestEventsInOrder(t *testing.T) {
	testutil.HostOnly(t)
	const n, m = 4, 200
	ta := startAgent(t, "", "")
	ctx := context.Background()

	all, err := ta.client.Watch(ctx, api.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	nets, err := ta.client.Watch(ctx, api.WatchRequest{Kind: events.KindNet})
	if err != nil {
		t.Fatal(err)
	}
	defer nets.Close()

	sessions := make([]*api.Session, n)
	children := make([]*sandbox.Child, n)
	for i := range sessions {
		s, err := ta.client.CreateSandbox(ctx, createReq(t))
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = s
		if children[i], err = launch.Start(s, exec.Command("sleep", "60")); err != nil {
			t.Fatal(err)
		}
	}
	var sent []events.Event
	for j := 0; j < m; j++ {
		for i, s := range sessions {
			sb, ok := ta.be.sandbox(s.Sandbox.ID)
			if !ok {
				t.Fatalf("backend does not know sandbox %s", s.Sandbox.Name)
			}
			e := events.Event{
				CgroupID: sb.CgroupID, PID: uint32(1000 + i), TGID: uint32(1000 + i), Comm: "cat",
				Kind: events.KindFile, Op: events.OpRead, Path: fmt.Sprintf("/secret/%d/%d", i, j),
			}
			if j%10 == 0 {
				e.Kind, e.Op, e.Path = events.KindNet, events.OpConnect, ""
			}
			ta.be.deny(e, false)
			e.Sandbox, e.Backend = s.Sandbox.Name, "fake"
			sent = append(sent, e)
		}
	}
	for i, s := range sessions {
		var got []events.Event
		for len(got) < m {
			select {
			case e := <-s.Events():
				got = append(got, e)
			case <-time.After(5 * time.Second):
				t.Fatalf("session %d: %d events, want %d", i, len(got), m)
			}
		}
		for j, e := range got {
			want := sent[j*n+i]
			if !sameEvent(e, want) {
				t.Fatalf("session %d event %d = %+v, want %+v", i, j, e, want)
			}
		}
	}
	for k, want := range sent {
		e, _, err := all.Next()
		if err != nil || e == nil || !sameEvent(*e, want) {
			t.Fatalf("watch event %d = %+v, %v; want %+v", k, e, err, want)
		}
	}
	// The net watcher, read last, was behind: each sandbox's identical
	// connects may come folded into one event with their count.
	for k := uint64(0); k < n*m/10; {
		e, _, err := nets.Next()
		if err != nil || e == nil || e.Kind != events.KindNet {
			t.Fatalf("net watch denial %d = %+v, %v", k, e, err)
		}
		k += e.N()
	}
	for i, s := range sessions {
		e, err := s.End(5 * time.Second)
		if err != nil || e.Reason != "ended" || e.Events != m {
			t.Errorf("session %d ended with %+v, %v", i, e, err)
		}
		if _, err := children[i].Wait(); err != nil {
			t.Error(err)
		}
	}
}

func sameEvent(a, b events.Event) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestHostileRequests sends what a broken or hostile client might; each
// gets an error, and the agent keeps serving.
func TestHostileRequests(t *testing.T) {
	testutil.HostOnly(t)
	old := requestTimeout
	requestTimeout = 300 * time.Millisecond
	t.Cleanup(func() { requestTimeout = old })
	ta := startAgent(t, "", "")

	frame := func(body string) []byte {
		b := make([]byte, 4+len(body))
		binary.BigEndian.PutUint32(b, uint32(len(body)))
		copy(b[4:], body)
		return b
	}
	tests := []struct {
		name string
		send []byte
		code string // "" means: the agent just closes
	}{
		{"oversized", []byte{0x7f, 0xff, 0xff, 0xff}, api.CodeTooLarge},
		{"just over the limit", binary.BigEndian.AppendUint32(nil, api.MaxMessage+1), api.CodeTooLarge},
		{"not json", frame("hello"), api.CodeBadRequest},
		{"wrong type", frame(`{"v":1,"op":42}`), api.CodeBadRequest},
		{"unknown field", frame(`{"v":1,"op":"status","admin":true}`), api.CodeBadRequest},
		{"trailing data", frame(`{"v":1,"op":"status"}{}`), api.CodeBadRequest},
		{"wrong version", frame(`{"v":99,"op":"status"}`), api.CodeVersion},
		{"unknown op", frame(`{"v":1,"op":"rm -rf"}`), api.CodeBadRequest},
		{"missing body", frame(`{"v":1,"op":"create"}`), api.CodeBadRequest},
		{"two bodies", frame(`{"v":1,"op":"end","end":{"sandbox":"s1-p1"},"watch":{}}`), api.CodeBadRequest},
		{"relative home", frame(`{"v":1,"op":"create","create":{"home":"home","project_root":"/"}}`), api.CodeBadRequest},
		{"bad name", frame(`{"v":1,"op":"end","end":{"sandbox":"../../etc"}}`), api.CodeBadRequest},
		{"bad kind", frame(`{"v":1,"op":"watch","watch":{"kind":"all"}}`), api.CodeBadRequest},
		{"place without session", frame(`{"v":1,"op":"place","place":{"pid":1}}`), api.CodeBadRequest},
		{"bad yaml", frame(`{"v":1,"op":"create","create":{"home":"/h","project_root":"/h","global":{"path":"/h/c.yaml","data":"` + b64("deny_read: [") + `"}}}`), api.CodePolicy},
		{"end someone else's", frame(`{"v":1,"op":"end","end":{"sandbox":"s999-p1"}}`), api.CodeNotFound},
		{"truncated", frame(`{"v":1,"op":"status"}`)[:10], api.CodeTimeout},
		{"slow client", nil, api.CodeTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", ta.Socket())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			var r api.Response
			err = api.NewConn(c).Read(&r, time.Now().Add(5*time.Second))
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if r.OK || r.Error == nil || r.Error.Code != tt.code {
				t.Fatalf("response %+v, want error %s", r, tt.code)
			}
		})
	}
	// A client that connects and leaves at once.
	for i := 0; i < 50; i++ {
		if c, err := net.Dial("unix", ta.Socket()); err == nil {
			c.Close()
		}
	}
	if _, err := ta.client.Status(context.Background()); err != nil {
		t.Fatalf("agent stopped serving: %v", err)
	}
}

func b64(s string) string {
	b, _ := json.Marshal([]byte(s))
	return strings.Trim(string(b), `"`)
}

// FuzzRequest feeds arbitrary frames to a live agent: it must answer or
// close, never crash or hang.
func FuzzRequest(f *testing.F) {
	testutil.HostOnly(f)
	f.Add([]byte(`{"v":1,"op":"status"}`))
	f.Add([]byte(`{"v":1,"op":"list"}`))
	f.Add([]byte(`{"v":1,"op":"watch","watch":{"sandbox":"s1-p1","kind":"net"}}`))
	f.Add([]byte(`{"v":1,"op":"create","create":{"home":"/","project_root":"/","global":{"path":"/c","data":"e30="}}}`))
	ta := startAgent(f, "", "")
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := net.Dial("unix", ta.Socket())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hdr := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		c.Write(append(hdr, body...))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var r api.Response
		err = api.NewConn(c).Read(&r, time.Now().Add(10*time.Second))
		if err != nil && !errors.Is(err, io.EOF) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && strings.Contains(string(body), `"watch"`) {
				return // a valid watch streams nothing until an event comes
			}
			t.Fatalf("read: %v", err)
		}
	})
}
