//go:build linux

package loader

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil/uringops"
	"github.com/aigate-dev/aigate/internal/uring"
)

// io_uring performs connects, sends, socket creations and opens from three
// contexts: the submitting thread, an io-wq worker thread and the ring's
// SQPOLL thread. The tests below run each operation in each context inside
// a sandbox and expect the same verdicts and events as the system calls get:
// a context that escaped the sandbox's cgroup would be a way out.

// uringModes are the helper's MODE words. "+enter": the ring, and its worker
// or SQPOLL thread, are made before the process enters the sandbox.
var uringModes = []string{"inline", "io-wq", "sqpoll", "io-wq+enter", "sqpoll+enter"}

// The rings and answers shared with the other package's helper
// (testutil/uringops).
var (
	uringRing    = uringops.Ring
	uringErrno   = uringops.Errno
	requireUring = uringops.Require
)

// Helper answers beyond errnos.
const (
	uringLeftBehind = uringops.LeftBehind
	uringNoThread   = uringops.NoThread
)

// uringHelperOp runs "MODE OP ARGS" in the helper and returns the errno:
//
//	connect ADDR:PORT         TCP: listen on ADDR if it is local (port 0: any),
//	                          then IORING_OP_SOCKET + IORING_OP_CONNECT
//	sendmsg ADDR:PORT         IORING_OP_SOCKET (UDP) + IORING_OP_SENDMSG to ADDR
//	socket FAMILY TYPE PROTO  IORING_OP_SOCKET
//	openat PATH               IORING_OP_OPENAT, read-only
//
// For a MODE+enter mode the helper moves itself into the cgroup whose
// cgroup.procs is fd 3 after making the ring.
func uringHelperOp(args []string) (string, error) {
	if len(args) < 3 {
		return "", fmt.Errorf("uring takes MODE OP ARGS, got %q", args)
	}
	r, code, err := uringRing(args[0])
	if err != nil || code != 0 {
		return strconv.Itoa(code), err
	}
	var errno unix.Errno
	switch args[1] {
	case "connect", "sendmsg":
		dst, err := netip.ParseAddrPort(args[2])
		if err != nil {
			return "", err
		}
		errno = uringSockOp(r, args[1], dst)
	case "socket":
		if len(args) != 5 {
			return "", fmt.Errorf("uring socket takes FAMILY TYPE PROTO")
		}
		var a [3]int
		for i := range a {
			if a[i], err = strconv.Atoi(args[2+i]); err != nil {
				return "", err
			}
		}
		fd, err := r.Socket(a[0], a[1]|unix.SOCK_CLOEXEC, a[2])
		if err == nil {
			unix.Close(fd)
		}
		errno = uringErrno(err)
	case "openat":
		fd, err := r.Openat(unix.AT_FDCWD, args[2], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		errno = uringErrno(err)
	default:
		return "", fmt.Errorf("unknown uring op %q", args[1])
	}
	if errno == 999 {
		return "", fmt.Errorf("uring %q: not an errno", args)
	}
	return strconv.Itoa(int(errno)), nil
}

// uringSockOp is sockOp through io_uring, the socket included.
func uringSockOp(r *uring.Ring, op string, dst netip.AddrPort) unix.Errno {
	typ := unix.SOCK_DGRAM
	if op == "connect" {
		typ = unix.SOCK_STREAM
		// The listener is an ordinary socket: only the way out is under test.
		lsa, lfam := sockaddr(netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()))
		if lfd, err := unix.Socket(lfam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err == nil {
			defer unix.Close(lfd)
			_ = unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if unix.Bind(lfd, lsa) == nil && unix.Listen(lfd, 8) == nil && dst.Port() == 0 {
				if sa, err := unix.Getsockname(lfd); err == nil {
					switch sa := sa.(type) {
					case *unix.SockaddrInet4:
						dst = netip.AddrPortFrom(dst.Addr(), uint16(sa.Port))
					case *unix.SockaddrInet6:
						dst = netip.AddrPortFrom(dst.Addr(), uint16(sa.Port))
					}
				}
			}
		}
	}
	_, fam := sockaddr(dst)
	fd, err := r.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return uringErrno(err) + 1000
	}
	defer unix.Close(fd)
	if op == "connect" {
		return uringErrno(r.Connect(fd, dst))
	}
	_, err = r.Sendmsg(fd, dst, []byte("x"))
	return uringErrno(err)
}

// TestNetUring: io_uring connects, unconnected sends and socket creations
// from a sandbox meet the cgroup programs in every io_uring context, with
// the same errno and event as the system calls.
func TestNetUring(t *testing.T) {
	env := newNetEnv(t)
	requireUring(t)
	n := openNet(t, NetOptions{Backend: "test"})
	c := compileNet(t, policy.NetDeny, policy.LoopbackNone, "10.1.2.3:8443", "127.0.0.1")
	cases := []struct {
		op   string
		dst  string
		deny events.Op // "": allowed
	}{
		{"connect", "10.1.2.3:8443", ""},
		{"connect", "127.0.0.1:0", ""},
		{"connect", "10.1.2.3:8444", events.OpConnect},
		{"connect", "127.0.0.2:0", events.OpConnect},
		{"connect", "[2001:db8::1]:80", events.OpConnect},
		{"connect", "[::ffff:10.1.2.3]:8444", events.OpConnect},
		{"connect", "[::ffff:127.0.0.1]:0", ""},
		{"sendmsg", "10.1.2.3:8443", ""},
		{"sendmsg", "10.9.9.9:9", events.OpSend},
		{"sendmsg", "[2001:db8::1]:9", events.OpSend},
		{"sendmsg", "[::ffff:169.254.169.254]:80", events.OpSend},
	}
	// A raw socket is refused by sock_create (TestNetRawSockets).
	const rawOp = "socket 2 3 1"

	// Outside every sandbox the same operations succeed: the refusals below
	// are the sandbox's.
	var outside []string
	for _, cs := range cases {
		outside = append(outside, "uring sqpoll "+cs.op+" "+cs.dst)
	}
	got, _ := env.run(nil, append(outside, "uring sqpoll "+rawOp)...)
	for i, e := range got {
		if e != 0 {
			t.Fatalf("outside the sandbox: %s: errno %d", append(outside, rawOp)[i], e)
		}
	}

	for i, mode := range uringModes {
		t.Run(mode, func(t *testing.T) {
			g := env.sandbox(n, uint32(i+1), c.Net, nil, false)
			before, err := n.Stats()
			if err != nil {
				t.Fatal(err)
			}
			var ops []string
			for _, cs := range append(cases, struct {
				op   string
				dst  string
				deny events.Op
			}{rawOp, "", events.OpConnect}) {
				ops = append(ops, strings.TrimSpace("uring "+mode+" "+cs.op+" "+cs.dst))
			}
			var pid int
			if strings.HasSuffix(mode, "+enter") {
				procs, err := os.OpenFile(filepath.Join(g.Path, "cgroup.procs"), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer procs.Close()
				got, pid = env.runFiles(nil, []*os.File{procs}, ops...)
			} else {
				got, pid = env.run(g, ops...)
			}
			var denied []netip.AddrPort
			for j, cs := range cases {
				want := syscall.Errno(0)
				if cs.deny != "" {
					want = syscall.EPERM
					denied = append(denied, netip.MustParseAddrPort(cs.dst))
				}
				if got[j] != want {
					t.Errorf("%s: errno %d (%v), want %d (%v)", ops[j], got[j], got[j], want, want)
				}
			}
			if e := got[len(cases)]; e != syscall.EPERM {
				t.Errorf("%s: errno %d (%v), want EPERM", ops[len(cases)], e, e)
			}
			evs := nextEvents(t, n.Events(), len(denied)+1)
			noMoreEvents(t, n.Events())
			k := 0
			for _, cs := range cases {
				if cs.deny == "" {
					continue
				}
				ev, dst := evs[k], denied[k]
				k++
				rule, _ := c.MatchConnect(dst, nil, false)
				// Port 0 asks the helper's listener for a port; a send to a
				// v4-mapped address reaches sendmsg4 unmapped, as without
				// io_uring.
				sameAddr := ev.Addr.Addr().Unmap() == dst.Addr().Unmap() && (dst.Port() == 0 || ev.Addr.Port() == dst.Port())
				if ev.Kind != events.KindNet || ev.Op != cs.deny || !sameAddr || ev.Rule != uint32(rule) ||
					ev.CgroupID != g.ID || ev.TGID != uint32(pid) || ev.Audit {
					t.Errorf("%s %s: event %+v, want op %s rule %d cgroup %d tgid %d", cs.op, dst, ev, cs.deny, rule, g.ID, pid)
				}
				checkUringComm(t, mode, ev)
			}
			if ev := evs[k]; ev.Kind != events.KindNet || ev.Path != "raw socket" || ev.CgroupID != g.ID || ev.TGID != uint32(pid) {
				t.Errorf("%s: event %+v, want a raw socket refusal in cgroup %d by %d", rawOp, ev, g.ID, pid)
			} else {
				checkUringComm(t, mode, ev)
			}
			after, err := n.Stats()
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range []events.Op{events.OpConnect, events.OpSend} {
				want := uint64(0)
				for _, cs := range cases {
					if cs.deny == op {
						want++
					}
				}
				if op == events.OpConnect {
					want++ // the raw socket
				}
				if d := counter(after, op, false) - counter(before, op, false); d != want {
					t.Errorf("%s counter grew by %d, want %d", op, d, want)
				}
			}
		})
	}
}

// checkUringComm checks that the event came from the thread the mode says
// runs the operation: an io-wq worker, the SQPOLL thread, or the helper.
func checkUringComm(t *testing.T, mode string, ev events.Event) {
	t.Helper()
	prefix := map[string]string{"io-wq": "iou-wrk-", "sqpoll": "iou-sqp-"}[strings.TrimSuffix(mode, "+enter")]
	if prefix == "" {
		if strings.HasPrefix(ev.Comm, "iou-") {
			t.Errorf("inline: event from %q, want the submitting thread", ev.Comm)
		}
		return
	}
	if !strings.HasPrefix(ev.Comm, prefix) || ev.PID == ev.TGID {
		t.Errorf("%s: event from %q (tid %d, tgid %d), want a %s* thread of the helper", mode, ev.Comm, ev.PID, ev.TGID, prefix)
	}
}
