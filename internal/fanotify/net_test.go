//go:build linux

package fanotify

import (
	"net"
	"net/netip"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

var _ = registerHelper("connect", func(args []string) string {
	ap := netip.MustParseAddrPort(args[0])
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return errnoName(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return errnoName(err)
	}
	return "ok"
})

// TestNetworkDenialsInEvents: the sock_addr programs' denials arrive on this
// backend's Events and Stats.
func TestNetworkDenialsInEvents(t *testing.T) {
	e := newEnv(t, nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	open := e.sandbox(policy.Policy{Net: policy.NetAllow, Loopback: true})
	closed := e.sandbox(policy.Policy{Net: policy.NetDeny, Loopback: false})
	if got := e.run(open, "connect", addr); got != "ok" {
		t.Fatalf("connect from a sandbox that allows it: %s", got)
	}
	if got := e.run(closed, "connect", addr); got != "EPERM" {
		t.Fatalf("connect from a net: deny sandbox: %s, want EPERM", got)
	}
	ev := e.event()
	if ev.Kind != events.KindNet || ev.Op != events.OpConnect || ev.Addr.String() != addr || ev.Backend != "fanotify" {
		t.Fatalf("event %+v", ev)
	}
	if n := e.count(events.KindNet, events.OpConnect, false); n != 1 {
		t.Fatalf("connect counter %d, want 1", n)
	}
}
