//go:build linux

package dns

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestDiagRequestLayout pins the hand-made encoding: the offsets of
// inet_diag_req_v2, and the UDP lookup's swapped ends.
func TestDiagRequestLayout(t *testing.T) {
	local := netip.MustParseAddrPort("127.0.0.2:5353")
	remote := netip.MustParseAddrPort("127.0.0.1:40000")
	b, err := diagRequest(7, unix.IPPROTO_TCP, local, remote)
	if err != nil {
		t.Fatal(err)
	}
	ne := binary.NativeEndian
	if len(b) != 72 || ne.Uint32(b) != 72 || ne.Uint16(b[4:]) != unix.SOCK_DIAG_BY_FAMILY ||
		ne.Uint16(b[6:]) != unix.NLM_F_REQUEST || ne.Uint32(b[8:]) != 7 {
		t.Fatalf("nlmsghdr % x", b[:16])
	}
	r := b[16:]
	if r[0] != unix.AF_INET || r[1] != unix.IPPROTO_TCP {
		t.Errorf("family %d protocol %d", r[0], r[1])
	}
	id := r[8:]
	if binary.BigEndian.Uint16(id) != 5353 || binary.BigEndian.Uint16(id[2:]) != 40000 ||
		netip.AddrFrom4([4]byte(id[4:8])) != local.Addr() || netip.AddrFrom4([4]byte(id[20:24])) != remote.Addr() {
		t.Errorf("TCP sockid % x: want src = the socket's own end", id[:36])
	}
	if ne.Uint32(id[36:]) != 0 || ne.Uint32(id[40:]) != ^uint32(0) || ne.Uint32(id[44:]) != ^uint32(0) {
		t.Errorf("interface and cookie % x: want 0 and INET_DIAG_NOCOOKIE", id[36:48])
	}
	b, _ = diagRequest(8, unix.IPPROTO_UDP, local, remote)
	id = b[16+8:]
	if binary.BigEndian.Uint16(id) != 40000 || binary.BigEndian.Uint16(id[2:]) != 5353 {
		t.Errorf("UDP sockid % x: want dst = the socket's own end", id[:4])
	}
	b, _ = diagRequest(9, unix.IPPROTO_UDP, netip.MustParseAddrPort("[::ffff:127.0.0.2]:1"), remote)
	if b[16] != unix.AF_INET {
		t.Error("a v4-mapped client is not looked up as IPv4")
	}
	if _, err := diagRequest(10, unix.IPPROTO_UDP, netip.MustParseAddrPort("[::1]:1"), remote); err == nil {
		t.Error("mixed families accepted")
	}
}

func TestParseDiagReply(t *testing.T) {
	ne := binary.NativeEndian
	msg := func(typ uint16, seq uint32, body []byte) []byte {
		b := make([]byte, 16, 16+len(body)+3)
		ne.PutUint32(b, uint32(16+len(body)))
		ne.PutUint16(b[4:], typ)
		ne.PutUint32(b[8:], seq)
		b = append(b, body...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	errBody := make([]byte, 20)
	putErrno(errBody, unix.ENOENT)
	if _, err := parseDiagReply(msg(unix.NLMSG_ERROR, 3, errBody), 3); !errors.Is(err, errNoSocket) {
		t.Errorf("ENOENT: %v", err)
	}
	putErrno(errBody, unix.EPERM)
	if _, err := parseDiagReply(msg(unix.NLMSG_ERROR, 3, errBody), 3); !errors.Is(err, syscall.EPERM) {
		t.Errorf("EPERM: %v", err)
	}
	body := make([]byte, sizeofDiagMsg)
	body[0] = unix.AF_INET6
	binary.BigEndian.PutUint16(body[4:], 1234)
	v6 := netip.MustParseAddr("::1").As16()
	copy(body[8:], v6[:])
	ne.PutUint32(body[64:], 1000)
	ne.PutUint32(body[68:], 424242)
	stale := msg(unix.NLMSG_ERROR, 2, errBody)
	m, err := parseDiagReply(append(stale, msg(unix.SOCK_DIAG_BY_FAMILY, 3, body)...), 3)
	if err != nil || m.inode != 424242 || m.uid != 1000 || m.local != netip.MustParseAddrPort("[::1]:1234") {
		t.Errorf("got %+v, %v", m, err)
	}
	if _, err := parseDiagReply(stale, 3); !errors.Is(err, errStaleReply) {
		t.Errorf("stale only: %v", err)
	}
	if _, err := parseDiagReply(msg(unix.SOCK_DIAG_BY_FAMILY, 3, body[:40]), 3); err == nil {
		t.Error("short inet_diag_msg accepted")
	}
	bad := msg(unix.SOCK_DIAG_BY_FAMILY, 3, body)
	ne.PutUint32(bad, 9999)
	if _, err := parseDiagReply(bad, 3); err == nil {
		t.Error("a length past the buffer accepted")
	}
}

// TestDiagLookupKernel asks the kernel for sockets this test opened and
// compares the inode with fstat's: UDP connected and unconnected (bound to
// the wildcard address, as a resolver's sendto socket is), TCP, IPv4, IPv6
// and a dual-stack socket talking IPv4.
func TestDiagLookupKernel(t *testing.T) {
	d, err := openDiag()
	if err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	t.Cleanup(func() { d.close() })
	deadline := func() time.Time { return time.Now().Add(time.Second) }

	udpServer := func(network, addr string) netip.AddrPort {
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	srv4 := udpServer("udp4", "127.0.0.1:0")
	srv6 := udpServer("udp6", "[::1]:0")

	type tc struct {
		name          string
		proto         uint8
		conn          syscall.Conn
		client, proxy netip.AddrPort // as the proxy would see them
	}
	var cases []tc
	for _, s := range []struct {
		network string
		srv     netip.AddrPort
	}{{"udp4", srv4}, {"udp6", srv6}} {
		c, err := net.DialUDP(s.network, nil, net.UDPAddrFromAddrPort(s.srv))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cases = append(cases, tc{"connected " + s.network, unix.IPPROTO_UDP, c, c.LocalAddr().(*net.UDPAddr).AddrPort(), s.srv})
	}
	wild, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wild.Close() })
	wp := uint16(wild.LocalAddr().(*net.UDPAddr).Port)
	cases = append(cases, tc{"unconnected udp4 on 0.0.0.0", unix.IPPROTO_UDP, wild, netip.AddrPortFrom(srv4.Addr(), wp), srv4})
	// A dual-stack socket connected to a v4-mapped address: the proxy's
	// IPv4 listener sees a plain IPv4 client.
	dual := dualStackUDP(t, srv4)
	cases = append(cases, tc{"dual-stack udp6 to v4-mapped", unix.IPPROTO_UDP, dual.f, netip.AddrPortFrom(srv4.Addr(), dual.port), srv4})
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := "127.0.0.1:0"
		if network == "tcp6" {
			addr = "[::1]:0"
		}
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		c, err := net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cases = append(cases, tc{"connected " + network, unix.IPPROTO_TCP, c.(*net.TCPConn),
			c.LocalAddr().(*net.TCPAddr).AddrPort(), l.Addr().(*net.TCPAddr).AddrPort()})
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := fstatIno(t, c.conn)
			start := time.Now()
			m, err := d.lookup(c.proto, c.client, c.proxy, deadline())
			took := time.Since(start)
			if err != nil {
				t.Fatalf("lookup %s -> %s: %v", c.client, c.proxy, err)
			}
			if uint64(m.inode) != want {
				t.Errorf("inode %d, fstat says %d", m.inode, want)
			}
			if m.local.Port() != c.client.Port() || m.uid != uint32(unix.Geteuid()) {
				t.Errorf("reply %+v: want port %d, uid %d", m, c.client.Port(), unix.Geteuid())
			}
			t.Logf("sock_diag lookup: %s", took)
		})
	}
	// The socket is gone: ENOENT, and the next request is not confused
	// by the error reply.
	c := cases[0]
	c.conn.(net.Conn).Close()
	if _, err := d.lookup(c.proto, c.client, c.proxy, deadline()); !errors.Is(err, errNoSocket) {
		t.Errorf("closed socket: %v, want %v", err, errNoSocket)
	}
	c = cases[1]
	if m, err := d.lookup(c.proto, c.client, c.proxy, deadline()); err != nil || uint64(m.inode) != fstatIno(t, c.conn) {
		t.Errorf("lookup after an error reply: %+v, %v", m, err)
	}
}

type dualSock struct {
	f    *os.File
	port uint16
}

// dualStackUDP connects an AF_INET6 UDP socket without IPV6_V6ONLY to
// srv's v4-mapped address (Go's "udp6" sockets are v6-only).
func dualStackUDP(t *testing.T, srv netip.AddrPort) dualSock {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "dual-stack udp")
	t.Cleanup(func() { f.Close() })
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet6{Addr: netip.AddrFrom16(srv.Addr().As16()).As16(), Port: int(srv.Port())}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return dualSock{f, uint16(sa.(*unix.SockaddrInet6).Port)}
}

// putErrno writes an nlmsgerr's negative errno.
func putErrno(b []byte, e syscall.Errno) {
	binary.NativeEndian.PutUint32(b, uint32(-int32(e)))
}

func fstatIno(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return st.Ino
}
