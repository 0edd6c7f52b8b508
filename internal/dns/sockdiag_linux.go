package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The sock_diag wire format (linux/netlink.h, linux/inet_diag.h). The
// structs are small and fixed, so they are encoded by hand rather than
// through unsafe casts of Go structs.
const (
	sizeofNlMsghdr = 16
	sizeofDiagReq  = 56 // struct inet_diag_req_v2
	sizeofDiagMsg  = 72 // struct inet_diag_msg
	sizeofSockID   = 48 // struct inet_diag_sockid

	diagNoCookie = ^uint32(0) // INET_DIAG_NOCOOKIE: do not check the cookie

	diagAttrCgroupID = 21 // INET_DIAG_CGROUP_ID: sent with every reply since Linux 5.9
)

// errNoSocket is the kernel's answer when no socket matches.
var errNoSocket = errors.New("no such socket")

// diagMsg is the part of an inet_diag_msg the proxy uses.
type diagMsg struct {
	family uint8
	local  netip.AddrPort // the socket's own address and port
	remote netip.AddrPort // its peer (unspecified when unconnected)
	uid    uint32         // the socket's owner
	inode  uint32         // of the socket: /proc/PID/fd shows socket:[inode]
	// cgroupID is the cgroup v2 id of the socket (its creator's cgroup);
	// 0 when the kernel does not say.
	cgroupID uint64
}

// diagSock is a NETLINK_SOCK_DIAG socket. It answers for the network
// namespace it was created in, so it must be opened where the proxy's
// listeners are.
type diagSock struct {
	fd  int
	seq uint32
}

// diagBufs holds reply buffers: taken for one lookup, not held by each
// socket, of which the agent has two per sandbox (the proxy's member
// check and owner finder).
var diagBufs = sync.Pool{New: func() any { b := make([]byte, 8192); return &b }}

func openDiag() (*diagSock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind sock_diag netlink socket: %w", err)
	}
	return &diagSock{fd: fd}, nil
}

func (d *diagSock) close() error { return unix.Close(d.fd) }

// lookup asks the kernel for the socket of protocol proto (IPPROTO_UDP or
// IPPROTO_TCP) whose own address is local and whose peer is, or would be,
// remote: for a client of the proxy, local is the client's address as the
// proxy sees it and remote the proxy's. The kernel resolves it as it would
// deliver a packet from remote to local, so an unconnected UDP socket bound
// to the wildcard address is found too. Not safe for concurrent use.
func (d *diagSock) lookup(proto uint8, local, remote netip.AddrPort, deadline time.Time) (diagMsg, error) {
	d.seq++
	req, err := diagRequest(d.seq, proto, local, remote)
	if err != nil {
		return diagMsg{}, err
	}
	if err := unix.Sendto(d.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return diagMsg{}, fmt.Errorf("send sock_diag request: %w", err)
	}
	// The kernel answers a single-socket request while sendto runs, so the
	// reply is normally queued already; replies to an earlier request that
	// gave up are skipped by their sequence number.
	bp := diagBufs.Get().(*[]byte)
	defer diagBufs.Put(bp)
	buf := *bp
	for range 4 {
		n, err := d.recv(buf, deadline)
		if err != nil {
			return diagMsg{}, err
		}
		m, err := parseDiagReply(buf[:n], d.seq)
		if errors.Is(err, errStaleReply) {
			continue
		}
		return m, err
	}
	return diagMsg{}, errors.New("read sock_diag reply: only replies to earlier requests")
}

func (d *diagSock) recv(buf []byte, deadline time.Time) (int, error) {
	for {
		n, _, err := unix.Recvfrom(d.fd, buf, unix.MSG_DONTWAIT)
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EAGAIN):
			return 0, fmt.Errorf("read sock_diag reply: %w", err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return 0, fmt.Errorf("read sock_diag reply: %w", syscall.ETIMEDOUT)
		}
		fds := []unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(max(left/time.Millisecond, 1))); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("wait for sock_diag reply: %w", err)
		}
	}
}

// diagRequest encodes a SOCK_DIAG_BY_FAMILY request (nlmsghdr +
// inet_diag_req_v2) for one socket, see lookup.
func diagRequest(seq uint32, proto uint8, local, remote netip.AddrPort) ([]byte, error) {
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	if la.Is4() != ra.Is4() || !la.IsValid() || !ra.IsValid() {
		return nil, fmt.Errorf("sock_diag request: addresses %s and %s of different families", local, remote)
	}
	family := uint8(unix.AF_INET6)
	if la.Is4() {
		family = unix.AF_INET
	}
	// inet_diag_sockid's idiag_src is the socket's own end for TCP; the
	// UDP lookup (udp_dump_one) passes idiag_src as the packet's source
	// and idiag_dst as the socket's end: "swapped for historical reasons".
	src, dst := netip.AddrPortFrom(la, local.Port()), netip.AddrPortFrom(ra, remote.Port())
	if proto == unix.IPPROTO_UDP {
		src, dst = dst, src
	}
	b := make([]byte, sizeofNlMsghdr+sizeofDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], seq)
	// b[12:16], the port id: 0 addresses the kernel.
	r := b[sizeofNlMsghdr:]
	r[0] = family
	r[1] = proto
	// r[2] idiag_ext: no extensions; r[3] pad; r[4:8] idiag_states: a
	// single-socket lookup ignores it.
	id := r[8:]
	putSockID(id, src, dst)
	ne.PutUint32(id[36:], 0) // idiag_if: any interface
	ne.PutUint32(id[40:], diagNoCookie)
	ne.PutUint32(id[44:], diagNoCookie)
	return b, nil
}

// putSockID writes ports (big-endian) and addresses (network order; an
// IPv4 address fills the first of four words) of an inet_diag_sockid.
func putSockID(id []byte, src, dst netip.AddrPort) {
	binary.BigEndian.PutUint16(id[0:], src.Port())
	binary.BigEndian.PutUint16(id[2:], dst.Port())
	putAddr(id[4:20], src.Addr())
	putAddr(id[20:36], dst.Addr())
}

func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

func getAddr(b []byte, family uint8, port uint16) netip.AddrPort {
	if family == unix.AF_INET {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])), port)
}

var errStaleReply = errors.New("reply to an earlier request")

// parseDiagReply decodes the kernel's answer to request seq: one
// inet_diag_msg, or an error (ENOENT: no such socket).
func parseDiagReply(b []byte, seq uint32) (diagMsg, error) {
	ne := binary.NativeEndian
	stale := false
	for len(b) >= sizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		if l < sizeofNlMsghdr || l > len(b) {
			return diagMsg{}, fmt.Errorf("sock_diag reply: bad message length %d", l)
		}
		body := b[sizeofNlMsghdr:l]
		if ne.Uint32(b[8:]) != seq {
			stale = true
			b = b[min(nlmAlign(l), len(b)):]
			continue
		}
		switch typ {
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return diagMsg{}, errors.New("sock_diag reply: short error message")
			}
			errno := -int32(ne.Uint32(body))
			if errno == int32(unix.ENOENT) {
				return diagMsg{}, errNoSocket
			}
			return diagMsg{}, fmt.Errorf("sock_diag request: %w", syscall.Errno(errno))
		case unix.SOCK_DIAG_BY_FAMILY:
			return parseDiagMsg(body)
		}
		b = b[min(nlmAlign(l), len(b)):]
	}
	if stale {
		return diagMsg{}, errStaleReply
	}
	return diagMsg{}, errors.New("sock_diag reply: no answer")
}

func nlmAlign(l int) int { return (l + 3) &^ 3 }

func parseDiagMsg(b []byte) (diagMsg, error) {
	if len(b) < sizeofDiagMsg {
		return diagMsg{}, fmt.Errorf("sock_diag reply: inet_diag_msg of %d bytes, want %d", len(b), sizeofDiagMsg)
	}
	ne := binary.NativeEndian
	m := diagMsg{family: b[0]}
	if m.family != unix.AF_INET && m.family != unix.AF_INET6 {
		return diagMsg{}, fmt.Errorf("sock_diag reply: address family %d", m.family)
	}
	id := b[4 : 4+sizeofSockID]
	m.local = getAddr(id[4:20], m.family, binary.BigEndian.Uint16(id[0:]))
	m.remote = getAddr(id[20:36], m.family, binary.BigEndian.Uint16(id[2:]))
	m.uid = ne.Uint32(b[64:])
	m.inode = ne.Uint32(b[68:])
	// Attributes follow: struct nlattr {u16 len; u16 type} and the value,
	// each padded to 4 bytes.
	for a := b[sizeofDiagMsg:]; len(a) >= 4; {
		l, typ := int(ne.Uint16(a[0:])), ne.Uint16(a[2:])
		if l < 4 || l > len(a) {
			break
		}
		if typ == diagAttrCgroupID && l >= 12 {
			m.cgroupID = ne.Uint64(a[4:])
		}
		a = a[min(nlmAlign(l), len(a)):]
	}
	return m, nil
}
