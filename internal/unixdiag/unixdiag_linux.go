//go:build linux

package unixdiag

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/netns"
)

// What to ask for (UDIAG_SHOW_*), and the answer's attributes.
const (
	ShowVFS  = 0x2 // UDIAG_SHOW_VFS: the file a path socket is bound to
	ShowPeer = 0x4 // UDIAG_SHOW_PEER: the socket at the other end

	attrVFS  = 1 // UNIX_DIAG_VFS
	attrPeer = 2 // UNIX_DIAG_PEER
	reqLen   = 24
	msgLen   = 16
)

// Socket is the kernel's answer about one live unix socket.
type Socket struct {
	// Peer is the inode number of the socket at the other end, 0 when it
	// is not connected or its peer is closed (asked with ShowPeer).
	Peer uint32
	// Bound is set when the socket is bound to a file (asked with ShowVFS).
	Bound bool
	// FileIno and FileDev name that file: the low 32 bits of its inode
	// number, and its device in the kernel's encoding (MAJOR<<20 | MINOR,
	// see KernelDev), as the kernel puts them in struct unix_diag_vfs.
	FileIno, FileDev uint32
}

// ErrNotFound means no live socket has the inode number in the asking
// socket's network namespace: it was closed, or lives in another one.
var ErrNotFound = errors.New("no such unix socket")

// Open opens a sock_diag socket in the caller's network namespace; the
// kernel finds the sockets of that namespace only.
func Open() (int, error) {
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sock_diag socket: %w", err)
	}
	return s, nil
}

// Get asks the sock_diag socket nl about the unix socket whose inode
// number is ino, with show a set of Show flags. An ENOENT of the kernel
// (before Linux 6.5 also the answer when unix_diag is not loaded) is
// ErrNotFound, wrapped.
func Get(nl int, ino uint32, show uint32) (Socket, error) {
	req := make([]byte, unix.NLMSG_HDRLEN+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // sequence
	r := req[unix.NLMSG_HDRLEN:]
	r[0] = unix.AF_UNIX
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	ne.PutUint32(r[8:], ino)
	ne.PutUint32(r[12:], show)
	ne.PutUint32(r[16:], ^uint32(0)) // no cookie to check
	ne.PutUint32(r[20:], ^uint32(0))
	if err := unix.Sendto(nl, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Socket{}, fmt.Errorf("sock_diag request: %w", err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(nl, buf, 0)
	if err != nil {
		return Socket{}, fmt.Errorf("sock_diag answer: %w", err)
	}
	msgs, err := parseNetlink(buf[:n])
	if err != nil {
		return Socket{}, err
	}
	for _, m := range msgs {
		switch m.typ {
		case unix.NLMSG_ERROR:
			if len(m.data) < 4 {
				return Socket{}, errors.New("sock_diag: short error message")
			}
			errno := unix.Errno(-int32(ne.Uint32(m.data)))
			if errno == unix.ENOENT {
				return Socket{}, fmt.Errorf("sock_diag: socket %d: %w (%w)", ino, ErrNotFound, errno)
			}
			return Socket{}, fmt.Errorf("sock_diag: %w", errno)
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(m.data) < msgLen {
				return Socket{}, errors.New("sock_diag: short answer")
			}
			if got := ne.Uint32(m.data[4:]); got != ino {
				return Socket{}, fmt.Errorf("sock_diag: answer for socket %d, asked for %d", got, ino)
			}
			return parseAttrs(m.data[msgLen:]), nil
		}
	}
	return Socket{}, errors.New("sock_diag: no answer")
}

// FileHeld reports whether a live socket (in nl's network namespace) is
// bound to the file of inode number ino on device dev (stat(2)'s
// encoding): the kernel lists every unix socket, with the file of each.
// A socket file no socket holds reaches nothing: a connect to it is
// refused, and no bind can take it over (bind makes a new file).
func FileHeld(nl int, dev, ino uint64) (bool, error) {
	req := make([]byte, unix.NLMSG_HDRLEN+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 2) // sequence
	r := req[unix.NLMSG_HDRLEN:]
	r[0] = unix.AF_UNIX
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	ne.PutUint32(r[12:], ShowVFS)
	if err := unix.Sendto(nl, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("sock_diag dump request: %w", err)
	}
	kdev, found := KernelDev(dev), false
	buf := make([]byte, 32<<10)
	for {
		n, _, err := unix.Recvfrom(nl, buf, 0)
		if err != nil {
			return false, fmt.Errorf("sock_diag dump: %w", err)
		}
		msgs, err := parseNetlink(buf[:n])
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			switch m.typ {
			case unix.NLMSG_DONE:
				return found, nil
			case unix.NLMSG_ERROR:
				if len(m.data) < 4 {
					return false, errors.New("sock_diag: short error message")
				}
				return false, fmt.Errorf("sock_diag dump: %w", unix.Errno(-int32(ne.Uint32(m.data))))
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(m.data) < msgLen {
					return false, errors.New("sock_diag: short answer")
				}
				s := parseAttrs(m.data[msgLen:])
				// Read to the end even when found: the dump's
				// rest would be the next question's answer.
				found = found || s.Bound && s.FileIno == uint32(ino) && s.FileDev == kdev
			}
		}
	}
}

func parseAttrs(a []byte) Socket {
	ne := binary.NativeEndian
	var s Socket
	for len(a) >= 4 {
		l := int(ne.Uint16(a[0:]))
		if l < 4 || l > len(a) {
			break
		}
		switch ne.Uint16(a[2:]) {
		case attrPeer:
			if l >= 8 {
				s.Peer = ne.Uint32(a[4:])
			}
		case attrVFS:
			if l >= 12 {
				s.Bound, s.FileIno, s.FileDev = true, ne.Uint32(a[4:]), ne.Uint32(a[8:])
			}
		}
		a = a[min(len(a), (l+3)&^3):]
	}
	return s
}

type netlinkMsg struct {
	typ  uint16
	data []byte
}

func parseNetlink(b []byte) ([]netlinkMsg, error) {
	var out []netlinkMsg
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return nil, fmt.Errorf("sock_diag: bad message length %d", l)
		}
		out = append(out, netlinkMsg{typ: binary.NativeEndian.Uint16(b[4:]), data: b[unix.NLMSG_HDRLEN:l]})
		b = b[min(len(b), (l+3)&^3):]
	}
	return out, nil
}

// KernelDev turns a device number as stat(2) gives it into the kernel's
// own encoding, the one unix_diag reports.
func KernelDev(dev uint64) uint32 {
	return unix.Major(dev)<<20 | unix.Minor(dev)
}

// OpenFor opens a sock_diag socket in the network namespace of process
// pid, where the sockets it binds live; in the caller's own when pid is
// gone (or 0).
func OpenFor(pid uint32) (int, error) {
	if pid == 0 {
		return Open()
	}
	ns, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return Open()
	}
	if err != nil {
		return -1, fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	defer unix.Close(ns)
	s, err := OpenInNS(ns)
	if err != nil {
		return -1, fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	return s, nil
}

// OpenInNS opens a sock_diag socket in the network namespace ns (a
// descriptor of it): directly when that is the calling thread's own,
// else from a thread that enters it and comes back.
func OpenInNS(ns int) (int, error) {
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(ns, &theirs); err != nil {
		return -1, err
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &ours); err != nil {
		return -1, fmt.Errorf("own network namespace: %w", err)
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		return Open()
	}
	return netns.OpenIn(ns, Open)
}
