package dns

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpSocket opens a non-blocking UDP socket of family in one call.
func udpSocket(family int) (int, error) {
	return unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}

// newPort moves a connected UDP socket to a fresh port: connecting to
// AF_UNSPEC dissolves the association and, the port never having been
// bound explicitly, unhashes the socket and forgets its port
// (__udp_disconnect); connecting again binds it to a new random one, as
// the connect of a new socket does. Two system calls where closing the
// socket and opening another took six (socket, connect, fcntl, two
// epoll_ctl, close) and the kernel allocated and, after an RCU grace
// period, freed a socket, an inode and a file (issue #15). Datagrams
// queued for the old port stay queued: exchange drains them.
func newPort(f *os.File, to unix.Sockaddr) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		unspec := unix.RawSockaddr{Family: unix.AF_UNSPEC}
		if _, _, e := unix.Syscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&unspec)), unsafe.Sizeof(unspec)); e != 0 {
			opErr = e
			return
		}
		opErr = unix.Connect(int(fd), to)
	})
	if err != nil {
		return err
	}
	return opErr
}
