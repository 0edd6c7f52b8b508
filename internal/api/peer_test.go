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
// process when the agent accepts. Each runs as the kernel has it and, in
// "before 6.5", as on a kernel without SO_PEERPIDFD, where the pid is all
// the socket says and the process that has it must hold the connection.
func TestPeerOfGone(t *testing.T) {
	testutil.RequireRoot(t) // the pid reuse writes ns_last_pid
	t.Run("this kernel", func(t *testing.T) { testPeerOfGone(t, hasPeerPidfd(t)) })
	t.Run("before 6.5", func(t *testing.T) {
		t.Setenv(noPeerPidfdEnv, "1")
		testPeerOfGone(t, false)
	})
}

func testPeerOfGone(t *testing.T, exact bool) {
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
	// holding starts cmd, a client that holds its connection until the
	// returned function is called.
	holding := func(cmd *exec.Cmd) func() {
		t.Helper()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return func() {
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("exits after accept", func(t *testing.T) {
		cmd := client("hold")
		release := holding(cmd)
		p, err := PeerOf(accept())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.PID != cmd.Process.Pid {
			t.Fatalf("peer pid %d, the client is %d", p.PID, cmd.Process.Pid)
		}
		if p.Exact() != exact {
			t.Fatalf("peer named by the socket: %v, want %v", p.Exact(), exact)
		}
		if err := p.Verify(); err != nil {
			t.Fatalf("the client is still there: %v", err)
		}
		release()
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
		testutil.PidReuse(t, func() bool {
			pid := connectAndExit()
			if !testutil.StartWithPID(t, pid, func() *exec.Cmd { return exec.Command("sleep", "60") }) {
				accept().Close() // this attempt's connection, out of the next one's way
				return false
			}
			p, err := PeerOf(accept())
			if !errors.Is(err, ErrPeerGone) {
				p.Close()
				t.Fatalf("PeerOf with the client's pid %d now another process's = %+v, %v; want %v", pid, p, err, ErrPeerGone)
			}
			return true
		})
	})
	t.Run("client in another network namespace", func(t *testing.T) {
		// The agent's end of the connection lives in the client's
		// namespace, where the kernel is asked about it.
		cmd := exec.Command("unshare", "--net", os.Args[0])
		cmd.Env = append(os.Environ(), peerClientEnv+"=hold "+sock)
		release := holding(cmd)
		p, err := PeerOf(accept())
		if err != nil {
			t.Fatalf("client in its own network namespace: %v", err)
		}
		defer p.Close()
		if p.PID != cmd.Process.Pid {
			t.Fatalf("peer pid %d, the client is %d", p.PID, cmd.Process.Pid)
		}
		release()
	})
}

// TestHoldsConn: before Linux 6.5 the process that has the peer's pid is
// taken for the peer only if it holds the client's end of the connection:
// the client does, a process beside it does not, and neither does the
// client once it has closed that end.
func TestHoldsConn(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	if err := holdsConn(fds[0], os.Getpid()); err != nil {
		t.Fatalf("this process holds the other end: %v", err)
	}
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	if err := holdsConn(fds[0], other.Process.Pid); !errors.Is(err, ErrPeerGone) {
		t.Fatalf("a process without the other end: %v, want %v", err, ErrPeerGone)
	}
	unix.Close(fds[1])
	if err := holdsConn(fds[0], os.Getpid()); !errors.Is(err, ErrPeerGone) {
		t.Fatalf("the other end closed: %v, want %v", err, ErrPeerGone)
	}
}

// BenchmarkPeerOf: what the agent pays per connection to learn who is on
// the other end, as the kernel has it and on the path of kernels without
// SO_PEERPIDFD (the holder check: a sock_diag question and a scan of the
// peer's open files). Compare the two side by side.
func BenchmarkPeerOf(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	c, err := ln.AcceptUnix()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	run := func(b *testing.B) {
		for b.Loop() {
			p, err := PeerOf(c)
			if err != nil {
				b.Fatal(err)
			}
			p.Close()
		}
	}
	b.Run("this kernel", run)
	b.Run("before 6.5", func(b *testing.B) {
		b.Setenv(noPeerPidfdEnv, "1")
		run(b)
	})
}
