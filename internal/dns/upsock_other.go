//go:build !linux

package dns

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// udpSocket opens a non-blocking UDP socket of family.
func udpSocket(family int) (int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fd, err := unix.Socket(family, unix.SOCK_DGRAM, 0)
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// newPort is not done here: whether a BSD UDP socket keeps its port when
// disconnected is not relied on, so a used socket is closed and a new one
// opened (upstream.go).
func newPort(*os.File, unix.Sockaddr) error {
	return errors.ErrUnsupported
}
