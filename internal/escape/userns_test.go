//go:build linux

package escape

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
)

// usernsRoute is issue 11's route to a unix listener outside the sandbox:
// in a user and mount namespace of its own, the sandbox binds the outside
// listener's directory over the allow_unix directory and connects to the
// allowed name. It prints "unshare N" (its exit status) and the tool's
// errno when unshare worked.
func (b *box) usernsRoute(allowed, out string) string {
	inner := fmt.Sprintf("mount --bind %s %s && %s", out, allowed, b.tool("unix "+allowed+"/bus"))
	return fmt.Sprintf("unshare -Urm sh -c '%s' 2>&1; echo unshare $?; unshare -U true; echo plain $?",
		strings.ReplaceAll(inner, "'", `'\''`))
}

// listenUnix is a unix listener of the user's outside every sandbox (a
// D-Bus session bus, an ssh-agent) that counts its clients.
func listenUnix(t *testing.T, b *box, dir string) *atomic.Int32 {
	t.Helper()
	b.mkdir(dir)
	bus := filepath.Join(dir, "bus")
	l, err := net.Listen("unix", bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Chmod(bus, 0o777); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return &n
}

// TestEscapeUserns: by default (allow_userns off) a sandboxed process
// cannot create a user namespace, so the bind mount of an outside
// listener's directory over an allow_unix directory never happens and
// the listener is never reached; each attempt is a process event
// "userns" (on fanotify from Linux 6.7: seccompEvents).
func TestEscapeUserns(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		allowed, out := b.allowedDir(), filepath.Join(b.home, "out")
		accepted := listenUnix(t, b, out)
		b.config(fmt.Sprintf("net: deny\nallow_unix:\n  - %s/\n", allowed))
		r := b.sh(b.usernsRoute(allowed, out))
		if n := accepted.Load(); n != 0 {
			t.Fatalf("the outside listener was reached %d times\n%s", n, r)
		}
		if !strings.Contains(r.stdout, "unshare 1") || !strings.Contains(r.stdout, "plain 1") {
			t.Fatalf("unshare -U worked inside the sandbox\n%s", r)
		}
		if !seccompEvents(t, b) {
			return
		}
		e, ok := r.denied(events.OpUserns, "user namespace")
		if !ok || e.Kind != events.KindProc {
			t.Errorf("no process userns event:\n%s", r)
		}
	})
}

// TestEscapeUsernsAllowed is the control: with allow_userns: true the same
// commands create user namespaces on both backends. The bind mount route
// still fails where the kernel has Landlock, whose domain refuses mount(2)
// to the processes it restricts (and on BPF LSM, which checks the peer
// socket itself): without both, nothing else would stop it on fanotify
// (docs/threat-model.md).
func TestEscapeUsernsAllowed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		allowed, out := b.allowedDir(), filepath.Join(b.home, "out")
		accepted := listenUnix(t, b, out)
		b.config(fmt.Sprintf("net: deny\nallow_userns: true\nallow_unix:\n  - %s/\n", allowed))
		r := b.sh(b.usernsRoute(allowed, out))
		if !strings.Contains(r.stdout, "plain 0") {
			t.Fatalf("allow_userns: true, yet unshare -U failed\n%s", r)
		}
		if _, ok := r.denied(events.OpUserns, ""); ok {
			t.Errorf("a userns event with allow_userns: true\n%s", r)
		}
		t.Logf("%s backend, allow_userns: true: the outside listener was reached %d times; route output: %q",
			b.backend, accepted.Load(), r.stdout)
		if n := accepted.Load(); n != 0 && (landlock.ABI() > 0 || b.backend == "lsm") {
			t.Errorf("allow_userns: true: the bind mount reached the outside listener %d times although Landlock (ABI %d) is there", n, landlock.ABI())
		}
	})
}

// allowedDir is an empty directory of root's for an allow_unix entry: on
// fanotify one the sandbox can write is refused (TestEscapeUnixPlantedLink).
func (b *box) allowedDir() string {
	b.t.Helper()
	allowed := filepath.Join(b.rootDir("userns"), "allowed")
	if err := os.Mkdir(allowed, 0o755); err != nil {
		b.t.Fatal(err)
	}
	return allowed
}
