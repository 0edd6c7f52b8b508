//go:build linux

package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/netns"
)

// Before Linux 6.5 the socket names its peer only by pid, and the pid may
// have been handed to another process between the peer's connect and the
// agent's accept. What an impostor cannot fake is holding the other end
// of the connection: the agent asks the kernel which socket that is
// (sock_diag, UNIX_DIAG_PEER) and looks for it among the pid's open files.
// A process outside that holds it was given it by a sandboxed one, which
// needs its cooperation: such a process can do what it likes anyway.

// noPeerPidfdEnv, set to 1, makes PeerOf act as on a kernel without
// SO_PEERPIDFD. Only tests set it, so that hosts with Linux 6.5 or later
// run the older kernels' path too.
const noPeerPidfdEnv = "AIGATE_TEST_NO_PEERPIDFD"

// The sock_diag request and answer for AF_UNIX (linux/unix_diag.h).
const (
	udiagShowPeer  = 0x4 // UDIAG_SHOW_PEER
	unixDiagPeer   = 2   // UNIX_DIAG_PEER
	unixDiagReqLen = 24  // struct unix_diag_req
	unixDiagMsgLen = 16  // struct unix_diag_msg
)

// holdsConn says whether process pid holds the other end of the connected
// unix socket fd: nil if it does, an error wrapping ErrPeerGone if not.
// The caller has a pidfd of pid open, and checks it after holdsConn
// returns: only then does what was read under /proc/PID belong to it.
func holdsConn(fd, pid int) error {
	ino, err := peerInode(fd)
	if err != nil {
		hint := ""
		if errors.Is(err, unix.ENOENT) {
			hint = " (without SO_PEERPIDFD, before Linux 6.5, the agent needs the kernel's unix_diag: modprobe unix_diag)"
		}
		return fmt.Errorf("pid %d: find the client's end of the connection%s: %w", pid, hint, err)
	}
	if ino == 0 {
		// The client's end is closed: no one holds it.
		return fmt.Errorf("pid %d: %w", pid, ErrPeerGone)
	}
	link := "socket:[" + strconv.FormatUint(uint64(ino), 10) + "]"
	// The fd table of the thread group leader first; a thread may have
	// its own (clone without CLONE_FILES), so the others' after.
	dirs := []string{fmt.Sprintf("/proc/%d/fd", pid)}
	if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		for _, t := range tasks {
			if t.Name() != strconv.Itoa(pid) {
				dirs = append(dirs, fmt.Sprintf("/proc/%d/task/%s/fd", pid, t.Name()))
			}
		}
	}
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // the thread is gone, or the process: Verify says which
		}
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == link {
				return nil
			}
		}
	}
	return fmt.Errorf("pid %d does not hold the connection: %w", pid, ErrPeerGone)
}

// peerInode returns the inode of the socket at the other end of the
// connected unix socket fd, 0 if that end is closed.
func peerInode(fd int) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat socket: %w", err)
	}
	nl, err := diagSocket(fd)
	if err != nil {
		return 0, err
	}
	defer unix.Close(nl)

	req := make([]byte, unix.NLMSG_HDRLEN+unixDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // sequence
	r := req[unix.NLMSG_HDRLEN:]
	r[0] = unix.AF_UNIX
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	ne.PutUint32(r[8:], uint32(st.Ino))
	ne.PutUint32(r[12:], udiagShowPeer)
	ne.PutUint32(r[16:], ^uint32(0)) // no cookie to check
	ne.PutUint32(r[20:], ^uint32(0))
	if err := unix.Sendto(nl, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag request: %w", err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(nl, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("sock_diag answer: %w", err)
	}
	msgs, err := parseNetlink(buf[:n])
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		switch m.typ {
		case unix.NLMSG_ERROR:
			if len(m.data) < 4 {
				return 0, errors.New("sock_diag: short error message")
			}
			return 0, fmt.Errorf("sock_diag: %w", unix.Errno(-int32(ne.Uint32(m.data))))
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(m.data) < unixDiagMsgLen {
				return 0, errors.New("sock_diag: short answer")
			}
			if got := ne.Uint32(m.data[4:]); got != uint32(st.Ino) {
				return 0, fmt.Errorf("sock_diag: answer for socket %d, asked for %d", got, st.Ino)
			}
			for a := m.data[unixDiagMsgLen:]; len(a) >= 4; {
				l := int(ne.Uint16(a[0:]))
				if l < 4 || l > len(a) {
					break
				}
				if ne.Uint16(a[2:]) == unixDiagPeer && l >= 8 {
					return ne.Uint32(a[4:]), nil
				}
				a = a[min(len(a), (l+3)&^3):]
			}
			return 0, nil // no peer attribute: not connected
		}
	}
	return 0, errors.New("sock_diag: no answer")
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

// diagSocket opens a sock_diag socket in the network namespace of the
// socket fd: the kernel looks sockets up only in the asker's namespace,
// and the agent's end of a connection lives in the client's.
func diagSocket(fd int) (int, error) {
	open := func() (int, error) {
		s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		if err != nil {
			return -1, fmt.Errorf("sock_diag socket: %w", err)
		}
		return s, nil
	}
	ns, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if errors.Is(err, unix.EPERM) {
		// Not root (the agent is): it could not enter another
		// namespace anyway, and its own is the likeliest.
		return open()
	}
	if err != nil {
		return -1, fmt.Errorf("network namespace of the socket: %w", err)
	}
	defer unix.Close(ns)
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(ns, &theirs); err != nil {
		return -1, fmt.Errorf("network namespace of the socket: %w", err)
	}
	if err := unix.Stat("/proc/self/ns/net", &ours); err != nil {
		return -1, fmt.Errorf("own network namespace: %w", err)
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		return open()
	}
	// Open it from a thread that enters their namespace and comes back.
	s, err := netns.OpenIn(ns, open)
	if err != nil {
		return -1, fmt.Errorf("in the socket's network namespace: %w", err)
	}
	return s, nil
}

// forceNoPeerPidfd reports whether a test asked for the path of kernels
// without SO_PEERPIDFD.
func forceNoPeerPidfd() bool {
	return strings.TrimSpace(os.Getenv(noPeerPidfdEnv)) == "1"
}
