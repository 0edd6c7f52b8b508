//go:build linux

package loader

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// holdUnix starts a helper in g that binds and listens at the unix path
// name and holds the socket until the returned stop is called; it returns
// the helper's pid.
func (e *netEnv) holdUnix(g *cgroup.Group, name string) (uint32, func()) {
	e.t.Helper()
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", e.ns.Name, self)
	cmd.Env = append(os.Environ(), netHelperEnv+"=unixhold "+name)
	fd, err := g.OpenFD()
	if err != nil {
		e.t.Fatal(err)
	}
	defer fd.Close()
	h := testutil.StartHeld(e.t, cmd, int(fd.Fd()))
	line, err := bufio.NewReader(h.Out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "0" {
		e.t.Fatalf("unixhold %s: %q, %v", name, line, err)
	}
	return uint32(cmd.Process.Pid), func() {
		if err := h.Stop(); err != nil {
			e.t.Error(err)
		}
	}
}

// TestNetUnixSandboxBound: the agent's question about a refused unix name
// it finds a socket at (internal/agent/unreachable.go): the socket file is
// the sandbox's own only when a live socket that a process of that very
// sandbox bound holds that very file. tmux's server inside, bound at the
// name its client was refused a moment before, is; an outsider's socket is
// not, neither at a name the sandbox never bound, nor in place of the
// sandbox's file while the sandbox's socket lives on (unlinked), nor after
// the sandbox's socket closed; nor is the sandbox's socket another
// sandbox's own. The file the sandbox's closed socket left, held by no
// socket, is its own (it reaches nothing).
func TestNetUnixSandboxBound(t *testing.T) {
	if !kernelAtLeast(t, 6, 7) {
		t.Logf("kernel before 6.7: unix sockets are not confined, no names are learned (TestNetUnixSockets)")
		return
	}
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	c, err := policy.Compile(&policy.Policy{Net: policy.NetDeny, Loopback: policy.LoopbackAll}, policy.Env{})
	if err != nil {
		t.Fatal(err)
	}
	g := env.sandbox(n, 7, c.Net, nil, false)
	other := env.sandbox(n, 8, c.Net, nil, false)
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	bound := func(cg uint64, pid uint32, name string) bool {
		t.Helper()
		var st unix.Stat_t
		var err error
		if err = unix.Stat(name, &st); err != nil {
			t.Fatal(err)
		}
		// Asked from the namespace the helpers run in, as the agent asks
		// from the one its sandboxes share: for a process that is gone
		// (the refused tmux client) it looks at its own.
		var own bool
		env.ns.Do(func() {
			own, err = n.SandboxBound(cg, pid, name, st.Dev, st.Ino)
		})
		if err != nil {
			t.Fatalf("SandboxBound %s: %v", name, err)
		}
		return own
	}
	outsider := func(name string) {
		t.Helper()
		_ = os.Remove(name)
		unixListener(t, env, "unix", name)
	}

	// The sandbox's own server, bound after its client's refusal: asked
	// as the agent asks, with the event's cgroup and name.
	if got, _ := env.run(g, "unix "+p("own.sock")); got[0] != unix.ENOENT {
		t.Fatalf("connect to a name where nothing is: errno %d, want ENOENT", got[0])
	}
	ev := nextEvents(t, n.Events(), 1)[0]
	if ev.Path != p("own.sock") || ev.CgroupID != g.ID {
		t.Fatalf("refusal event: %+v, want path %s, cgroup %d", ev, p("own.sock"), g.ID)
	}
	pid, _ := env.holdUnix(g, p("own.sock"))
	if !bound(ev.CgroupID, pid, ev.Path) {
		t.Errorf("the sandbox's own live socket is not its own")
	}
	if bound(other.ID, pid, p("own.sock")) {
		t.Errorf("sandbox 7's socket counts as sandbox 8's own")
	}

	// An outsider's socket at a name the sandbox never bound.
	outsider(p("out.sock"))
	if bound(g.ID, pid, p("out.sock")) {
		t.Errorf("an outsider's socket counts as the sandbox's own")
	}

	// The sandbox bound the name, then the outsider's server replaced the
	// file while the sandbox's socket lives on, bound to the unlinked one.
	pid, _ = env.holdUnix(g, p("swap.sock"))
	outsider(p("swap.sock"))
	if bound(g.ID, pid, p("swap.sock")) {
		t.Errorf("an outsider's socket in place of the sandbox's live one counts as its own")
	}

	// The sandbox's socket closed and its file stays (tmux's server,
	// gone by the time a late agent looks): nothing can be reached there.
	// Then an outsider's socket takes the name.
	pid, stop := env.holdUnix(g, p("closed.sock"))
	stop()
	if !bound(g.ID, pid, p("closed.sock")) {
		t.Errorf("the file the sandbox's closed socket left is not its own")
	}
	outsider(p("closed.sock"))
	if bound(g.ID, pid, p("closed.sock")) {
		t.Errorf("an outsider's socket at a name the sandbox's closed socket had counts as its own")
	}

	// A name the sandbox could not bind (an outsider holds it) is not
	// learned: its socket is never the sandbox's own.
	outsider(p("taken.sock"))
	if got, _ := env.run(g, "unixtaken "+p("taken.sock")); got[0] == 1003 {
		t.Fatalf("bind of an outsider's name inside did not fail with EADDRINUSE")
	}
	if bound(g.ID, pid, p("taken.sock")) {
		t.Errorf("an outsider's socket the sandbox failed to bind over counts as its own")
	}

	// The sandbox ends (its names leave unix_bound) before a late agent
	// looks: the file its closed socket left is still its own, an
	// outsider's live socket there is not.
	pid, stop = env.holdUnix(g, p("late.sock"))
	stop()
	if err := env.rules[7].remove(); err != nil {
		t.Fatal(err)
	}
	if !bound(g.ID, pid, p("late.sock")) {
		t.Errorf("the file a socket of an ended sandbox left is not its own")
	}
	outsider(p("late.sock"))
	if bound(g.ID, pid, p("late.sock")) {
		t.Errorf("an outsider's socket at a name an ended sandbox had bound counts as its own")
	}
	drain(n.Events())
}

// TestUnixEndedNames: the names of a sandbox that ended are kept for
// endedKeep, path names only, and only the sandbox's own.
func TestUnixEndedNames(t *testing.T) {
	var u netUnix
	key := func(cg uint64, name string, abstract bool) netUnixUnixBoundKey {
		k := netUnixUnixBoundKey{CgroupId: cg}
		copyName(&k.N, name)
		if abstract {
			k.N.Abstract = uint32(len(name))
		}
		return k
	}
	t0 := time.Now()
	u.remember(1, []netUnixUnixBoundKey{key(1, "/tmp/a/default", false), key(1, "bus", true)}, t0)
	if !u.endedBound(1, "/tmp/a/default") || u.endedBound(2, "/tmp/a/default") || u.endedBound(1, "bus") || u.endedBound(1, "/tmp/a/def") {
		t.Errorf("after the end: %+v", u.ended)
	}
	u.remember(2, []netUnixUnixBoundKey{key(2, "/tmp/b", false)}, t0.Add(endedKeep+time.Second))
	if u.endedBound(1, "/tmp/a/default") || !u.endedBound(2, "/tmp/b") {
		t.Errorf("after endedKeep: %+v", u.ended)
	}
}
