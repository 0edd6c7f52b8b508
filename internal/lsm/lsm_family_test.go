//go:build linux

package lsm

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestLSMSocketFamilies: a sandbox may create unix, inet and netlink
// sockets and no other family: AF_VSOCK (a guest's line to its host), TIPC
// and the rest are refused with an event naming the family, also where the
// kernel does not support the family at all; outside the sandbox the
// kernel's own answer stands.
func TestLSMSocketFamilies(t *testing.T) {
	l := openLSM(t)
	sb := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeEnforce}, policy.ModeEnforce)
	sock := func(family, typ int) []string {
		return []string{"socket", strconv.Itoa(family), strconv.Itoa(typ), "0"}
	}
	expectNetDenied(t, l, sb, events.OpConnect, "vsock socket", sock(unix.AF_VSOCK, unix.SOCK_STREAM)...)
	expectNetDenied(t, l, sb, events.OpConnect, "family 30 socket", sock(unix.AF_TIPC, unix.SOCK_RDM)...)
	expectNetDenied(t, l, sb, events.OpConnect, "family 31 socket", sock(unix.AF_BLUETOOTH, unix.SOCK_STREAM)...)
	expectAllowed(t, sb, sock(unix.AF_UNIX, unix.SOCK_STREAM)...)
	expectAllowed(t, sb, sock(unix.AF_INET6, unix.SOCK_STREAM)...)
	expectAllowed(t, sb, sock(unix.AF_NETLINK, unix.SOCK_DGRAM)...)
	noEvent(t, l)
	// Outside: not refused by aigate (the kernel may still lack the family).
	if code, _ := run(t, nil, sock(unix.AF_VSOCK, unix.SOCK_STREAM)...); code == exitEPERM {
		t.Errorf("AF_VSOCK outside the sandbox: EPERM")
	}
}
