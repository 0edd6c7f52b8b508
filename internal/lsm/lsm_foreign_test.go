//go:build linux

package lsm

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// foreignSocketOp runs in the helper: fdconnect and fdsend use the UDP
// socket inherited as fd 3 (created outside the sandbox), ownsend a socket
// the helper creates itself.
func foreignSocketOp(op, addr string) error {
	dst := netip.MustParseAddrPort(addr)
	sa := &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
	fd := 3
	if op == "ownsend" {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		defer unix.Close(fd)
	}
	if op == "fdconnect" {
		return unix.Connect(fd, sa)
	}
	return unix.Sendto(fd, []byte("x"), 0, sa)
}

// TestLSMForeignSocket: a UDP socket created outside the sandbox and
// inherited by a sandboxed process cannot be connected or sent on there
// (the cgroup programs never see it: it belongs to its creator's cgroup),
// with events naming the destination; a socket the sandbox creates itself
// and the same inherited socket outside the sandbox are untouched.
func TestLSMForeignSocket(t *testing.T) {
	l := openLSM(t)
	sb := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeEnforce}, policy.ModeEnforce)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.NewFile(uintptr(fd), "udp")
	defer sock.Close()
	runFd := func(sb *sandbox, args ...string) (int, int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), helperEnv+"=1")
		cmd.Stderr = os.Stderr
		cmd.ExtraFiles = []*os.File{sock}
		if sb != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(sb.fd.Fd())}
		}
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), cmd.Process.Pid
		}
		if err != nil {
			t.Fatalf("run %v: %v", args, err)
		}
		return 0, cmd.Process.Pid
	}
	for _, tc := range []struct {
		op   string
		evOp events.Op
	}{{"fdsend", events.OpSend}, {"fdconnect", events.OpConnect}} {
		code, pid := runFd(sb, tc.op, "127.0.0.1:9")
		if code != exitEPERM {
			t.Errorf("%s in the sandbox: exit %d, want EPERM", tc.op, code)
			continue
		}
		ev := nextEvent(t, l)
		if ev.Op != tc.evOp || ev.Path != "socket from outside the sandbox" || ev.Addr != netip.MustParseAddrPort("127.0.0.1:9") || int(ev.TGID) != pid {
			t.Errorf("%s: event %+v", tc.op, ev)
		}
	}
	if code, _ := runFd(sb, "ownsend", "127.0.0.1:9"); code != 0 {
		t.Errorf("own socket in the sandbox: exit %d", code)
	}
	for _, op := range []string{"fdsend", "fdconnect"} {
		if code, _ := runFd(nil, op, "127.0.0.1:9"); code != 0 {
			t.Errorf("%s outside the sandbox: exit %d", op, code)
		}
	}
	noEvent(t, l)
}
