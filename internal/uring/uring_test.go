//go:build linux

package uring

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
)

var modes = []Mode{Inline, Worker, SQPoll}

// newRing skips where io_uring is compiled out or disabled
// (kernel.io_uring_disabled, seccomp), unless AIGATE_REQUIRE_KERNEL=1.
func newRing(t *testing.T, m Mode) *Ring {
	t.Helper()
	r, err := New(m)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// ioThreads lists the comm of this process's io_uring kernel threads.
func ioThreads(t *testing.T) []string {
	t.Helper()
	dirs, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join("/proc/self/task", d.Name(), "comm"))
		if err == nil && strings.HasPrefix(string(comm), "iou-") {
			out = append(out, strings.TrimSpace(string(comm)))
		}
	}
	return out
}

// assertThread checks that the mode's kernel thread exists in this process:
// without it a test could think it covered io-wq or SQPOLL and not have.
func assertThread(t *testing.T, m Mode) {
	t.Helper()
	want := map[Mode]string{Worker: "iou-wrk-", SQPoll: "iou-sqp-"}[m]
	if want == "" {
		return
	}
	threads := ioThreads(t)
	for _, c := range threads {
		if strings.HasPrefix(c, want) {
			return
		}
	}
	t.Errorf("no %s* thread in this process after a %s operation: %q", want, m, threads)
}

func TestOpenat(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			r := newRing(t, m)
			fd, err := r.Openat(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatalf("openat %s: %v", path, err)
			}
			buf := make([]byte, 16)
			n, err := unix.Read(fd, buf)
			unix.Close(fd)
			if err != nil || string(buf[:n]) != "hello" {
				t.Fatalf("read through the io_uring descriptor: %q, %v", buf[:n], err)
			}
			assertThread(t, m)
			if _, err := r.Openat(unix.AT_FDCWD, filepath.Join(dir, "missing"), unix.O_RDONLY, 0); !errors.Is(err, unix.ENOENT) {
				t.Fatalf("openat of a missing file: %v, want ENOENT", err)
			}
			// Relative to a directory descriptor, creating the file.
			dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(dfd)
			fd, err = r.Openat(dfd, "new-"+m.String(), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o640)
			if err != nil {
				t.Fatalf("openat O_CREAT: %v", err)
			}
			unix.Close(fd)
			if st, err := os.Stat(filepath.Join(dir, "new-"+m.String())); err != nil || st.Mode().Perm()&^0o640 != 0 {
				t.Fatalf("created file: %v, %v", st, err)
			}
		})
	}
}

func TestConnect(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		ln, err := net.Listen(network, map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
		if err != nil {
			t.Logf("no %s loopback: %v", network, err)
			continue
		}
		defer ln.Close()
		dst := ln.Addr().(*net.TCPAddr).AddrPort()
		for _, m := range modes {
			t.Run(network+"/"+m.String(), func(t *testing.T) {
				r := newRing(t, m)
				fam := unix.AF_INET
				if network == "tcp6" {
					fam = unix.AF_INET6
				}
				fd, err := r.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatalf("socket: %v", err)
				}
				defer unix.Close(fd)
				if err := r.Connect(fd, dst); err != nil {
					t.Fatalf("connect %s: %v", dst, err)
				}
				assertThread(t, m)
				c, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := unix.Write(fd, []byte("hi")); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 2)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
					t.Fatalf("read from the accepted connection: %q, %v", buf, err)
				}
			})
		}
	}
	// A refused connection is the kernel's errno, not a Go error.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	r := newRing(t, Inline)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := r.Connect(fd, closed); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("connect to a closed port: %v, want ECONNREFUSED", err)
	}
}

func TestSendmsg(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			r := newRing(t, m)
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			msg := "datagram via " + m.String()
			n, err := r.Sendmsg(fd, dst, []byte(msg))
			if err != nil || n != len(msg) {
				t.Fatalf("sendmsg: %d, %v", n, err)
			}
			assertThread(t, m)
			buf := make([]byte, 64)
			_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err = pc.ReadFrom(buf)
			if err != nil || string(buf[:n]) != msg {
				t.Fatalf("received %q, %v; want %q", buf[:n], err, msg)
			}
		})
	}
}

func TestRawSockaddr(t *testing.T) {
	b, n := rawSockaddr(netip.MustParseAddrPort("[2001:db8::1]:443"))
	if n != unix.SizeofSockaddrInet6 || b[2] != 0x01 || b[3] != 0xbb || b[8] != 0x20 || b[9] != 0x01 || b[23] != 1 {
		t.Fatalf("sockaddr_in6 % x (%d)", b, n)
	}
	b, n = rawSockaddr(netip.MustParseAddrPort("10.1.2.3:53"))
	if n != unix.SizeofSockaddrInet4 || b[3] != 53 || b[4] != 10 || b[7] != 3 {
		t.Fatalf("sockaddr_in % x (%d)", b, n)
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range modes {
		if got, err := ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseMode("bogus"); err == nil {
		t.Error("ParseMode accepted bogus")
	}
}
