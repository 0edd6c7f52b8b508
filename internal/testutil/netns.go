//go:build linux

package testutil

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// NetNS is a network namespace a test made: its loopback is up and holds
// the addresses the test asked for, so that connections to non-loopback
// destinations really succeed without a packet leaving the namespace.
type NetNS struct {
	// Name is the namespace's name for `ip netns` (/run/netns/Name).
	Name string
	t    testing.TB
}

// NewNetNS creates the network namespace name with lo up and addrs (CIDR,
// IPv4 or IPv6) on it, and deletes it when the test ends. It skips (or,
// under AIGATE_REQUIRE_KERNEL=1, fails) without the ip command; the caller
// checks for root.
func NewNetNS(t testing.TB, name string, addrs ...string) *NetNS {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		SkipUnlessKernel(t, "the ip command (iproute2) is needed to make a network namespace")
	}
	IP(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete network namespace %s: %v: %s", name, err, out)
		}
	})
	IP(t, "-n", name, "link", "set", "lo", "up")
	for _, a := range addrs {
		args := []string{"-n", name, "addr", "add", a, "dev", "lo"}
		if strings.Contains(a, ":") {
			// No duplicate address detection: the address is usable at once.
			args = append(args, "nodad")
		}
		IP(t, args...)
	}
	return &NetNS{Name: name, t: t}
}

// Do runs fn on a thread that has joined the namespace; sockets fn opens
// stay in the namespace after it returns.
func (n *NetNS) Do(fn func()) {
	n.t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		n.t.Fatal(err)
	}
	defer self.Close()
	ns, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		n.t.Fatal(err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		n.t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread must not go back to the pool in the wrong namespace.
			panic(err)
		}
	}()
	fn()
}

// IP runs the ip command with args, failing the test with its output when
// it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
