//go:build linux

package loader

import (
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
)

// bindLink is the bind learner's link as it is now (nil: detached).
func bindLink(n *Net) link.Link {
	return n.unix.exit.attached()
}

// The bind learner stays attached for unixLinger after the last sandbox
// detached, so the next sandbox's attach finds it (re-attaching a
// tracepoint soon after its last probe went waits for an RCU grace
// period); it goes once no sandbox held it for unixLinger, and at once
// when the Net closes.
func TestUnixBindLearnerLingers(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	if !kernelAtLeast(t, 6, 7) {
		// No unix-socket hooks before 6.7, so no learner (as
		// TestNetUnixSockets checks).
		if n.unix != nil {
			t.Fatal("a unix-socket object on a kernel before 6.7")
		}
		return
	}
	if n.unix == nil {
		t.Fatalf("no unix-socket object on a kernel from 6.7: %v", n.UnixSockets())
	}
	old := unixLinger
	unixLinger = 300 * time.Millisecond
	t.Cleanup(func() { unixLinger = old })

	g := env.cgroup("linger")
	attach := func() *NetLinks {
		t.Helper()
		l, err := n.Attach(41, g.Path)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	detach := func(l *NetLinks) {
		t.Helper()
		if err := n.Detach(l); err != nil {
			t.Fatal(err)
		}
	}

	l := attach()
	first := bindLink(n)
	if first == nil {
		t.Fatal("the bind learner is not attached while a sandbox is")
	}
	detach(l)
	if bindLink(n) != first {
		t.Fatal("the bind learner was detached with the last sandbox: the next one pays a grace period to attach it again")
	}
	l = attach()
	if bindLink(n) != first {
		t.Fatal("a sandbox attached within unixLinger attached the bind learner again")
	}
	// Held again: the detach the first release scheduled must not fire.
	time.Sleep(2 * unixLinger)
	if bindLink(n) != first {
		t.Fatal("the bind learner was detached while a sandbox held it")
	}
	detach(l)
	deadline := time.Now().Add(10 * time.Second)
	for bindLink(n) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the bind learner is still attached 10 s after the last sandbox (linger %v)", unixLinger)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Closing the Net detaches a lingering learner at once.
	n2, err := OpenNet(NetOptions{Backend: "test"})
	if err != nil {
		t.Fatal(err)
	}
	unixLinger = time.Hour
	l2, err := n2.Attach(42, g.Path)
	if err != nil {
		_ = n2.Close()
		t.Fatal(err)
	}
	if err := n2.Detach(l2); err != nil {
		_ = n2.Close()
		t.Fatal(err)
	}
	if bindLink(n2) == nil {
		_ = n2.Close()
		t.Fatal("the second Net's bind learner did not linger")
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	if bindLink(n2) != nil {
		t.Fatal("Close left the bind learner attached")
	}
}
