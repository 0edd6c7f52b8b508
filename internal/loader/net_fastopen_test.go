//go:build linux

package loader

import (
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestNetFastOpen: a TCP Fast Open sendto connects without connect(2); the
// connect4/6 programs still see the destination (tcp_sendmsg_fastopen goes
// through the protocol's pre_connect), so a denied one fails with EPERM.
func TestNetFastOpen(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	c := compileNet(t, policy.NetDeny, policy.LoopbackNone, "10.1.2.3:8443")
	g := env.sandbox(n, 1, c.Net, nil, false)

	got, _ := env.run(g, "tfo 10.1.2.4:8443", "tfo [2001:db8::1]:443", "tfo [::ffff:10.1.2.4]:8443")
	for i, errno := range got {
		if errno != syscall.EPERM {
			t.Errorf("fast open %d: errno %v, want EPERM", i, errno)
		}
	}
	// Allowed: the kernel gets to try (no route or no listener, never EPERM).
	got, _ = env.run(g, "tfo 10.1.2.3:8443")
	if got[0] == syscall.EPERM {
		t.Errorf("fast open to an allowed address: EPERM")
	}
}
