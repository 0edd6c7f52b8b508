//go:build linux

package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var ma, mi int
	if _, err := fmt.Sscanf(rel, "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("kernel release %q: %v", rel, err)
	}
	return ma > major || ma == major && mi >= minor
}

// unixListener listens outside every sandbox, in the test's network
// namespace (abstract names live in one), and accepts until the test ends.
func unixListener(t *testing.T, env *netEnv, network, name string) {
	t.Helper()
	env.ns.Do(func() {
		if network == "unixgram" {
			c, err := net.ListenPacket("unixgram", name)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return
		}
		l, err := net.Listen("unix", name)
		if err != nil {
			t.Fatal(err)
		}
		testutil.AcceptAll(t, l)
	})
}

// TestNetUnixSockets: a sandboxed process cannot connect (stream) or send
// (datagram) to a unix socket of a listener outside its sandbox, by path
// or abstract name, unless allow_unix lists it; its own listeners work;
// a name it bound stops counting as its own once the socket is closed,
// and a bind that failed because an outsider holds the name teaches
// nothing. Outside the sandbox nothing changes. On kernels before 6.7 the
// Net reports that unix sockets are not confined, and they are not.
//
// A refused path name fails with ENOENT, whether a socket is there or
// not (the program leads it nowhere: a client that starts its own server
// when there is none, as tmux does, goes on), with the event as before;
// an abstract name with EPERM.
func TestNetUnixSockets(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	dir := t.TempDir()
	tag := fmt.Sprintf("aigate-test-%d", os.Getpid())
	p := func(name string) string { return filepath.Join(dir, name) }

	pol := &policy.Policy{Net: policy.NetDeny, Loopback: policy.LoopbackAll}
	for _, a := range []string{p("allowed.sock"), p("allowdir"), "@" + tag + "-allowed"} {
		pol.AllowUnix = append(pol.AllowUnix, policy.PathRule{Pattern: a})
	}
	c, err := policy.Compile(pol, policy.Env{})
	if err != nil {
		t.Fatal(err)
	}
	g := env.sandbox(n, 7, c.Net, nil, false)

	if err := os.Mkdir(p("allowdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	unixListener(t, env, "unix", p("out.sock"))
	unixListener(t, env, "unix", "@"+tag+"-out")
	unixListener(t, env, "unixgram", p("outgram.sock"))
	unixListener(t, env, "unix", p("allowed.sock"))
	unixListener(t, env, "unix", p("allowdir/x.sock"))
	unixListener(t, env, "unix", "@"+tag+"-allowed")
	unixListener(t, env, "unix", "@"+tag+"-taken")
	unixListener(t, env, "unix", p("allowed.sock.evil"))

	ops := []string{
		"unix " + p("out.sock"),
		"unix @" + tag + "-out",
		"unixgram " + p("outgram.sock"),
		"unix " + p("allowed.sock"),
		"unix " + p("allowdir/x.sock"),
		"unix @" + tag + "-allowed",
		"unixself " + p("self.sock"),
		"unixself @" + tag + "-self",
		"unixselfgram " + p("selfgram.sock"),
		"unixtaken @" + tag + "-taken",
		"unix " + p("allowed.sock.evil"),
		"unix " + dir + "/allowdir/../out.sock", // under allowdir by prefix only
		"unix " + dir + "/allowdir/./x.sock",
		"unix " + p("missing.sock"), // no socket there: tmux's first connect
		"unixgram " + p("missinggram.sock"),
	}
	confined := kernelAtLeast(t, 6, 7)
	E, N := syscall.EPERM, syscall.ENOENT
	want := []syscall.Errno{N, E, N, 0, 0, 0, 0, 0, 0, E, N, N, 0, N, N}
	if !confined {
		if err := n.UnixSockets(); !errors.Is(err, ErrNoUnixHooks) {
			t.Fatalf("UnixSockets on a kernel before 6.7: %v, want ErrNoUnixHooks", err)
		}
		if s := UnixSocketEnforcement(); !strings.HasPrefix(s, "none: ") {
			t.Errorf("UnixSocketEnforcement: %q", s)
		}
		// Nothing is refused; a name with no socket fails as it does
		// without a sandbox.
		want = make([]syscall.Errno, len(ops))
		want[len(ops)-2], want[len(ops)-1] = N, N
	} else if err := n.UnixSockets(); err != nil {
		t.Fatalf("UnixSockets: %v", err)
	}

	got, _ := env.run(g, ops...)
	for i, op := range ops {
		if got[i] != want[i] {
			t.Errorf("in the sandbox: %s: errno %d, want %d", op, got[i], want[i])
		}
	}
	if !confined {
		return
	}
	evs := nextEvents(t, n.Events(), 8)
	wantPaths := []string{p("out.sock"), "@" + tag + "-out", p("outgram.sock"), "@" + tag + "-taken", p("allowed.sock.evil"), dir + "/allowdir/../out.sock",
		p("missing.sock"), p("missinggram.sock")}
	for i, ev := range evs {
		if ev.Kind != events.KindNet || ev.Op != events.OpUnix || ev.Path != wantPaths[i] || ev.Audit {
			t.Errorf("event %d: %+v, want op unix path %s", i, ev, wantPaths[i])
		}
	}

	// Outside the sandbox nothing is refused.
	out, _ := env.run(nil, ops[0], ops[1], ops[2])
	for i, e := range out {
		if e != 0 {
			t.Errorf("outside: %s: errno %d", ops[i], e)
		}
	}

	// A name the sandbox bound is its own only while its socket lives: the
	// helper above closed self.sock, so an outsider's socket there is
	// refused.
	unixListener(t, env, "unix", p("self.sock"))
	unixListener(t, env, "unix", "@"+tag+"-self")
	got, _ = env.run(g, "unix "+p("self.sock"), "unix @"+tag+"-self")
	for i, e := range got {
		if e != []syscall.Errno{N, E}[i] {
			t.Errorf("outsider on a name the sandbox bound before: op %d: errno %d, want %d", i, e, []syscall.Errno{N, E}[i])
		}
	}
	drain(n.Events())

	// Removing the policy forgets its allow_unix entries and bound names.
	if err := env.rules[7].remove(); err != nil {
		t.Fatal(err)
	}
	var k netUnixUnixAllowKey
	var rule uint32
	if it := n.unix.objs.UnixAllow.Iterate(); it.Next(&k, &rule) {
		t.Errorf("allow_unix entry left after Remove: %+v", k)
	}
}

// TestNetUnixAudit: an audited sandbox reaches an outside unix socket by
// path and by abstract name, each reported as audit; the path is not led
// nowhere as a refused one is (TestNetUnixSockets).
func TestNetUnixAudit(t *testing.T) {
	if !kernelAtLeast(t, 6, 7) {
		t.Logf("kernel before 6.7: unix sockets are not confined (TestNetUnixSockets)")
		return
	}
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	dir := t.TempDir()
	tag := fmt.Sprintf("aigate-audit-%d", os.Getpid())
	c, err := policy.Compile(&policy.Policy{Net: policy.NetDeny, Loopback: policy.LoopbackAll}, policy.Env{})
	if err != nil {
		t.Fatal(err)
	}
	g := env.sandbox(n, 9, c.Net, nil, true)
	out := filepath.Join(dir, "out.sock")
	unixListener(t, env, "unix", out)
	unixListener(t, env, "unixgram", out+".gram")
	unixListener(t, env, "unix", "@"+tag)
	ops := []string{"unix " + out, "unixgram " + out + ".gram", "unix @" + tag}
	got, _ := env.run(g, ops...)
	for i, op := range ops {
		if got[i] != 0 {
			t.Errorf("audit: %s: errno %d, want 0", op, got[i])
		}
	}
	want := []string{out, out + ".gram", "@" + tag}
	for i, ev := range nextEvents(t, n.Events(), len(want)) {
		if ev.Op != events.OpUnix || ev.Path != want[i] || !ev.Audit {
			t.Errorf("audit event %d: %+v, want audit op unix path %s", i, ev, want[i])
		}
	}
}
