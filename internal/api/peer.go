//go:build linux

package api

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Peer is who is on the other end of a connection, as the kernel says
// (SO_PEERCRED), never as the client claims.
//
// A pid names a process only until it is reaped; then the kernel may give
// the number to another. A sandboxed process could connect, hand the
// socket to a sandboxed child and exit, and if an outside process took its
// pid, a check of /proc/PID would look at that process and find it
// outside. So a peer also holds a pidfd, which names the process itself
// and never another: whatever the agent reads under /proc/PID names the
// peer only if Verify, called after the read, finds the pidfd's process
// still there (while it is, its pid cannot be handed out again).
type Peer struct {
	UID uint32
	GID uint32
	PID int

	proc *peerProc
}

// peerProc is shared by the copies of a Peer: Close closes it once.
type peerProc struct {
	fd int // pidfd, -1 once closed
	// exact: the pidfd came from the socket (SO_PEERPIDFD, Linux 6.5), so
	// it names the process that connected. Else it was opened by pid at
	// accept (pidfd_open), and names the process that held the pid then
	// and held the client's end of the connection (holdsConn).
	exact bool
}

// ErrPeerGone means the process that connected has exited: its pid may
// name another process by now, so nothing about the pid can be trusted.
var ErrPeerGone = errors.New("the process that connected to the agent has exited; each process must open its own connection (a connection handed on to another process is refused)")

// Root reports whether the peer is root, who may see and end everything.
func (p Peer) Root() bool { return p.UID == 0 }

// Exact reports whether the peer's identity came from the socket itself
// (SO_PEERPIDFD) rather than from its pid at accept.
func (p Peer) Exact() bool { return p.proc != nil && p.proc.exact }

// Verify says whether the process that connected is still there: called
// after reading /proc/PID, a nil answer means what was read was the peer's.
// A peer without a pidfd (never made by PeerOf, or closed) is refused: its
// identity cannot be established.
func (p Peer) Verify() error {
	if p.proc == nil || p.proc.fd < 0 {
		return fmt.Errorf("pid %d: the identity of the process that connected is unknown", p.PID)
	}
	err := unix.PidfdSendSignal(p.proc.fd, 0, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("pid %d: %w", p.PID, ErrPeerGone)
	}
	if err != nil {
		return fmt.Errorf("pid %d: check that the process that connected is still there: %w", p.PID, err)
	}
	return nil
}

// Close releases the peer's pidfd. The copies of p share it.
func (p Peer) Close() error {
	if p.proc == nil || p.proc.fd < 0 {
		return nil
	}
	err := unix.Close(p.proc.fd)
	p.proc.fd = -1
	return err
}

// PeerOf returns the credentials of the process that connected c and a
// pidfd of it: from the socket where the kernel has SO_PEERPIDFD (6.5),
// else opened by pid at once, and taken for the peer only if that process
// holds the client's end of c (holdsConn; the residual is in
// docs/threat-model.md). A peer that has already exited, or whose pid
// names a process that does not hold the connection, is ErrPeerGone.
// The caller closes the peer.
func PeerOf(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	pidfd, pidfdErr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr == nil {
			pidfd, pidfdErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
			if pidfdErr == nil && forceNoPeerPidfd() {
				unix.Close(pidfd)
				pidfd, pidfdErr = -1, unix.ENOPROTOOPT
			}
		}
	}); err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", credErr)
	}
	p := Peer{UID: cred.Uid, GID: cred.Gid, PID: int(cred.Pid)}
	exact := true
	switch {
	case pidfdErr == nil:
	case errors.Is(pidfdErr, unix.ENOPROTOOPT):
		// Before 6.5: the pid is all the socket says.
		exact = false
		pidfd, pidfdErr = unix.PidfdOpen(p.PID, 0)
		if errors.Is(pidfdErr, unix.ESRCH) {
			return Peer{}, fmt.Errorf("pid %d: %w", p.PID, ErrPeerGone)
		}
		if pidfdErr != nil {
			return Peer{}, fmt.Errorf("open pid %d of the process that connected: %w", p.PID, pidfdErr)
		}
		// The pid may be another process's by now: the one that has it
		// must hold the connection (checked before the Verify below).
		holdErr := errors.New("socket closed")
		if err := raw.Control(func(fd uintptr) { holdErr = holdsConn(int(fd), p.PID) }); err != nil {
			holdErr = err
		}
		if holdErr != nil {
			unix.Close(pidfd)
			return Peer{}, holdErr
		}
	case errors.Is(pidfdErr, unix.EINVAL), errors.Is(pidfdErr, unix.ESRCH):
		// 6.5 to 6.15 refuse a pidfd of a process that is gone.
		return Peer{}, fmt.Errorf("pid %d: %w", p.PID, ErrPeerGone)
	default:
		return Peer{}, fmt.Errorf("peer pidfd of pid %d: %w", p.PID, pidfdErr)
	}
	p.proc = &peerProc{fd: pidfd, exact: exact}
	// Later kernels hand out a pidfd of a process that has been reaped:
	// one that is gone already is refused here, before any request.
	if err := p.Verify(); err != nil {
		p.Close()
		return Peer{}, err
	}
	return p, nil
}
