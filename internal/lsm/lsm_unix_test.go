//go:build linux

package lsm

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// unixAddr is a unix sockaddr for a path, or an abstract name as "@name".
func unixAddr(name string) *unix.SockaddrUnix {
	if len(name) > 0 && name[0] == '@' {
		return &unix.SockaddrUnix{Name: "\x00" + name[1:]}
	}
	return &unix.SockaddrUnix{Name: name}
}

// lsmUnixOp is the helper's side: "unixconnect" connects a stream socket,
// "unixsend" sends a datagram without connecting, "unixself" listens on the
// name and connects to itself (a listener inside the sandbox).
func lsmUnixOp(op, name string) error {
	typ := unix.SOCK_STREAM
	if op == "unixsend" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	switch op {
	case "unixsend":
		return unix.Sendto(fd, []byte("x"), 0, unixAddr(name))
	case "unixself":
		l, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(l)
		if err := unix.Bind(l, unixAddr(name)); err != nil {
			return err
		}
		if err := unix.Listen(l, 4); err != nil {
			return err
		}
	}
	return unix.Connect(fd, unixAddr(name))
}

// listenUnix binds a socket of typ to name in the test process (outside
// every sandbox).
func listenUnix(t *testing.T, name string, typ int) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, unixAddr(name)); err != nil {
		t.Fatalf("bind %s: %v", name, err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 16); err != nil {
			t.Fatal(err)
		}
	}
}

func expectNetDenied(t *testing.T, l *Backend, sb *sandbox, op events.Op, path string, args ...string) {
	t.Helper()
	code, pid := run(t, sb, args...)
	if code != exitEPERM {
		t.Errorf("%v: exit %d, want EPERM", args, code)
		return
	}
	ev := nextEvent(t, l)
	if ev.Kind != events.KindNet || ev.Op != op || ev.Path != path || int(ev.TGID) != pid {
		t.Errorf("%v: event %+v, want net %s %q pid %d", args, ev, op, path, pid)
	}
}

// TestLSMUnixSockets: a sandboxed task reaches unix sockets of its own
// sandbox and those allow_unix lists, not the listeners of outsiders.
func TestLSMUnixSockets(t *testing.T) {
	l := openLSM(t)
	dir := tempDir(t)
	pid := os.Getpid()
	out, outDgram := dir+"/out.sock", dir+"/out.dgram"
	outAbs := fmt.Sprintf("@aigate-test-out-%d", pid)
	okPath, okAbs := dir+"/allowed/ok.sock", fmt.Sprintf("@aigate-test-ok-%d", pid)
	if err := os.Mkdir(dir+"/allowed", 0o755); err != nil {
		t.Fatal(err)
	}
	listenUnix(t, out, unix.SOCK_STREAM)
	listenUnix(t, outDgram, unix.SOCK_DGRAM)
	listenUnix(t, outAbs, unix.SOCK_STREAM)
	listenUnix(t, okPath, unix.SOCK_STREAM)
	listenUnix(t, okAbs, unix.SOCK_STREAM)
	if err := os.Symlink(out, dir+"/link.sock"); err != nil {
		t.Fatal(err)
	}

	p := &policy.Compiled{
		Mode:  policy.ModeEnforce,
		Rules: []policy.Rule{{ID: 1, Pattern: dir + "/allowed"}, {ID: 2, Pattern: okAbs}, {ID: 3, Pattern: "out.sock"}},
		Net: policy.NetPolicy{Unix: policy.FileSet{
			Paths: []policy.Entry{{Value: dir + "/allowed", Rule: 1}},
			Names: []policy.Entry{{Value: okAbs, Rule: 2}, {Value: "out.sock", Rule: 3}}, // a bare name allows nothing
		}},
	}
	sb := addSandbox(t, l, p, policy.ModeEnforce)

	expectNetDenied(t, l, sb, events.OpUnix, out, "unixconnect", out)
	expectNetDenied(t, l, sb, events.OpUnix, out, "unixconnect", dir+"/link.sock") // the socket's own path
	expectNetDenied(t, l, sb, events.OpUnix, outDgram, "unixsend", outDgram)
	expectNetDenied(t, l, sb, events.OpUnix, outAbs, "unixconnect", outAbs)
	noEvent(t, l)

	expectAllowed(t, sb, "unixconnect", okPath)
	expectAllowed(t, sb, "unixconnect", okAbs)
	expectAllowed(t, sb, "unixself", dir+"/in.sock")
	expectAllowed(t, sb, "unixself", fmt.Sprintf("@aigate-test-in-%d", pid))
	expectAllowed(t, nil, "unixconnect", out)
	expectAllowed(t, nil, "unixsend", outDgram)
	noEvent(t, l)
}

// TestLSMPacketSockets: packet and raw inet sockets are refused in a
// sandbox (netlink's SOCK_RAW is not), and allowed outside.
func TestLSMPacketSockets(t *testing.T) {
	l := openLSM(t)
	sb := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeEnforce}, policy.ModeEnforce)
	sock := func(family, typ, proto int) []string {
		return []string{"socket", strconv.Itoa(family), strconv.Itoa(typ), strconv.Itoa(proto)}
	}
	packet := sock(unix.AF_PACKET, unix.SOCK_RAW, 0)
	raw := sock(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	expectNetDenied(t, l, sb, events.OpConnect, "packet socket", packet...)
	expectNetDenied(t, l, sb, events.OpConnect, "packet socket", sock(unix.AF_PACKET, unix.SOCK_DGRAM, 0)...)
	expectNetDenied(t, l, sb, events.OpConnect, "raw socket", raw...)
	expectAllowed(t, sb, sock(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)...)
	expectAllowed(t, sb, sock(unix.AF_INET, unix.SOCK_DGRAM, 0)...)
	expectAllowed(t, nil, packet...)
	expectAllowed(t, nil, raw...)
	noEvent(t, l)
}
