//go:build linux

package api

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// peerClientEnv makes the test binary a client that connects to a socket:
// "connect SOCK" and exits, or "hold SOCK" and waits for stdin to close.
const peerClientEnv = "AIGATE_API_TEST_PEER"

func init() {
	testutil.HelperOps(peerClientEnv, func(f []string) string {
		if len(f) != 2 {
			return "error: want connect|hold SOCK"
		}
		c, err := net.Dial("unix", f[1])
		if err != nil {
			return "error: " + err.Error()
		}
		if f[0] == "hold" {
			_, _ = io.Copy(io.Discard, os.Stdin)
		}
		c.Close()
		return "ok"
	})
}

// hasPeerPidfd reports whether the kernel gives a socket's peer as a pidfd
// (SO_PEERPIDFD, Linux 6.5).
func hasPeerPidfd(t *testing.T) bool {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	fd, err := unix.GetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	if err == nil {
		unix.Close(fd)
		return true
	}
	if !errors.Is(err, unix.ENOPROTOOPT) {
		t.Fatalf("SO_PEERPIDFD on a socketpair: %v", err)
	}
	return false
}

// TestPeerOfGone: the agent's idea of who asks is refused once the process
// that connected is gone, because its pid may then name another process:
// gone before the agent accepted, gone after (Verify, which the agent calls
// after reading /proc/PID), and gone with its pid already taken by another
// process when the agent accepts. The last is caught only where the kernel
// names the peer itself (SO_PEERPIDFD); before Linux 6.5 the pid is all
// there is, and the test shows that limit (docs/threat-model.md).
func TestPeerOfGone(t *testing.T) {
	testutil.RequireRoot(t) // the pid reuse writes ns_last_pid
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := func(op string) *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), peerClientEnv+"="+op+" "+sock)
		return cmd
	}
	accept := func() *net.UnixConn {
		t.Helper()
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// connectAndExit returns the pid of a client that connected and has
	// been reaped.
	connectAndExit := func() int {
		t.Helper()
		cmd := client("connect")
		if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Fatalf("client: %q, %v", out, err)
		}
		return cmd.Process.Pid
	}

	t.Run("exits after accept", func(t *testing.T) {
		cmd := client("hold")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p, err := PeerOf(accept())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.PID != cmd.Process.Pid {
			t.Fatalf("peer pid %d, the client is %d", p.PID, cmd.Process.Pid)
		}
		if err := p.Verify(); err != nil {
			t.Fatalf("the client is still there: %v", err)
		}
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if err := p.Verify(); !errors.Is(err, ErrPeerGone) {
			t.Fatalf("after the client was reaped: Verify = %v, want %v", err, ErrPeerGone)
		}
	})
	t.Run("exits before accept", func(t *testing.T) {
		connectAndExit()
		p, err := PeerOf(accept())
		if !errors.Is(err, ErrPeerGone) {
			p.Close()
			t.Fatalf("PeerOf of a reaped client = %+v, %v; want %v", p, err, ErrPeerGone)
		}
	})
	t.Run("pid reused before accept", func(t *testing.T) {
		pid := connectAndExit()
		testutil.StartWithPID(t, pid, func() *exec.Cmd { return exec.Command("sleep", "60") })
		p, err := PeerOf(accept())
		if hasPeerPidfd(t) {
			if !errors.Is(err, ErrPeerGone) {
				p.Close()
				t.Fatalf("PeerOf with the client's pid %d now another process's = %+v, %v; want %v", pid, p, err, ErrPeerGone)
			}
			return
		}
		// Before 6.5: the process that took the pid passes for the peer.
		if err != nil {
			t.Fatalf("without SO_PEERPIDFD, PeerOf = %v: the limit in docs/threat-model.md no longer holds, update it", err)
		}
		defer p.Close()
		if p.Exact() {
			t.Fatal("without SO_PEERPIDFD the peer claims to be named by the socket")
		}
		t.Logf("kernel without SO_PEERPIDFD: pid %d reused before accept passes for the peer (documented limit)", pid)
	})
}
