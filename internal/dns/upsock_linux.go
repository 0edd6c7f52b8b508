package dns

import "golang.org/x/sys/unix"

// udpSocket opens a non-blocking UDP socket of family in one call.
func udpSocket(family int) (int, error) {
	return unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}
