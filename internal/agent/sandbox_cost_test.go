//go:build linux

package agent

import (
	"net"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestIdleSandboxMemory: what an idle sandbox (created, its command
// placed, no events) keeps allocated in the agent, heap and goroutine
// stacks, stays within a budget. The agent may hold a thousand sandboxes;
// each cost ~0.5 MiB of the agent's resident set when every session
// allocated its whole event queue up front (docs/performance.md, "Against
// sandbox count"). The fake backend enforces nothing, so this is the
// agent's own share. The sessions are spoken on bare connections: an
// api.Session holds an event buffer of its own, on the client's side.
func TestIdleSandboxMemory(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	home := t.TempDir()
	open := func() {
		nc, err := net.Dial("unix", ta.Socket())
		if err != nil {
			t.Fatal(err)
		}
		c := api.NewConn(nc)
		t.Cleanup(func() { c.Close() })
		ask := func(r *api.Request) {
			t.Helper()
			r.V = api.Version
			var resp api.Response
			if err := c.Write(r, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := c.Read(&resp, time.Now().Add(10*time.Second)); err != nil {
				t.Fatal(err)
			}
			if resp.Error != nil {
				t.Fatal(resp.Error)
			}
		}
		ask(&api.Request{Op: api.OpCreate, Create: &api.CreateRequest{Home: home, ProjectRoot: home, Command: []string{"sleep"}}})
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		ask(&api.Request{Op: api.OpPlace, Place: &api.PlaceRequest{PID: cmd.Process.Pid}})
	}
	inUse := func() int64 {
		// The agent's goroutines settle after a place is answered:
		// give them a moment, then count only what is reachable.
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc + m.StackInuse)
	}
	open() // the first sandbox fills what the agent sets up once
	before := inUse()
	const n = 24 // within the default 32 per user
	for range n {
		open()
	}
	per := (inUse() - before) / n
	t.Logf("an idle sandbox keeps %d bytes of heap and stacks in the agent", per)
	// Generous: about 20 KiB measured; one session's event queue
	// allocated whole was 232 KiB.
	const budget = 96 << 10
	if per > budget {
		t.Errorf("an idle sandbox keeps %d bytes of heap and stacks in the agent, budget %d", per, budget)
	}
}
