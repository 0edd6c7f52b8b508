//go:build linux

package loader

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// recvFDOp receives one descriptor on the unix socket fd and prints its
// socket type (1: stream), or the errno.
func recvFDOp(fd string) (string, error) {
	n, err := strconv.Atoi(fd)
	if err != nil {
		return "", err
	}
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(n, make([]byte, 1), oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return strconv.Itoa(int(errnoOf(err))), nil
	}
	cms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cms) != 1 {
		return "", errors.New("no control message")
	}
	fds, err := unix.ParseUnixRights(&cms[0])
	if err != nil || len(fds) != 1 {
		return "", errors.New("no descriptor")
	}
	typ, err := unix.GetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return strconv.Itoa(int(errnoOf(err))), nil
	}
	return strconv.Itoa(typ), nil
}

// passTCP starts the helper in g (nil: outside every sandbox), sends it a
// TCP socket connected to dst over SCM_RIGHTS and returns its output, its
// pid and the signal that ended it (0: it exited).
func passTCP(t *testing.T, g *cgroup.Group, dst string) (string, int, syscall.Signal) {
	t.Helper()
	c, err := net.Dial("tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tcp, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "ours"), os.NewFile(uintptr(pair[1]), "theirs")
	defer ours.Close()
	defer theirs.Close()
	if err := unix.Sendmsg(pair[0], []byte("x"), unix.UnixRights(int(tcp.Fd())), nil, 0); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), netHelperEnv+"=recvfd 3")
	cmd.ExtraFiles = []*os.File{theirs}
	if g != nil {
		fd, err := g.OpenFD()
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	}
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return strings.TrimSpace(string(out)), cmd.Process.Pid, ws.Signal()
		}
	}
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	return strings.TrimSpace(string(out)), cmd.Process.Pid, 0
}

// TestNetReceiveCheck: a sandboxed process that receives a TCP socket
// created outside its sandbox is killed by SIGKILL before it can use it,
// with a receive event naming the socket's peer and a counted violation;
// in audit mode it keeps the socket and the event says audit; outside
// every sandbox nothing happens.
func TestNetReceiveCheck(t *testing.T) {
	if err := ProbeReceiveCheck(); errors.Is(err, ErrNoReceiveCheck) {
		t.Logf("not run: %v (the escape suite's TestEscapeSocketPassedIn records the gap)", err)
		return
	}
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test", CheckReceived: true})
	if err := n.ReceivedSockets(); err != nil {
		t.Fatalf("receive check not attached: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dst := l.Addr().String()
	c := compileNet(t, policy.NetDeny, policy.LoopbackNone)

	g := env.sandbox(n, 31, c.Net, nil, false)
	out, pid, sig := passTCP(t, g, dst)
	if sig != syscall.SIGKILL || out != "" {
		t.Fatalf("in the sandbox: signal %v, output %q; want SIGKILL before any output", sig, out)
	}
	ev := nextEvents(t, n.Events(), 1)[0]
	if ev.Kind != events.KindNet || ev.Op != events.OpReceive || ev.Audit || int(ev.TGID) != pid ||
		ev.Addr != netip.MustParseAddrPort(dst) || ev.Path != "socket from outside the sandbox" || ev.CgroupID != g.ID {
		t.Errorf("event %+v", ev)
	}
	st, err := n.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := counter(st, events.OpReceive, false); got != 1 {
		t.Errorf("receive counter %d, want 1", got)
	}

	audit := env.sandbox(n, 32, c.Net, nil, true)
	if out, _, sig := passTCP(t, audit, dst); sig != 0 || out != "1" {
		t.Errorf("audit sandbox: signal %v, output %q; want the stream socket received", sig, out)
	}
	if ev := nextEvents(t, n.Events(), 1)[0]; ev.Op != events.OpReceive || !ev.Audit {
		t.Errorf("audit event %+v", ev)
	}

	if out, _, sig := passTCP(t, nil, dst); sig != 0 || out != "1" {
		t.Errorf("outside every sandbox: signal %v, output %q", sig, out)
	}
	noMoreEvents(t, n.Events())
}
