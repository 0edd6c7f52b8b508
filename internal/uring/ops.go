//go:build linux

package uring

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Openat is openat(2) as IORING_OP_OPENAT: it returns the new descriptor.
func (r *Ring) Openat(dirfd int, path string, flags int, mode uint32) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	return result(r.submit(sqe{opcode: opOpenat, fd: int32(dirfd), addr: uint64(uintptr(unsafe.Pointer(p))), len: mode, opFlags: uint32(flags)}, p))
}

// Socket is socket(2) as IORING_OP_SOCKET (Linux 5.19): the socket is
// created, and charged to a cgroup, by whichever thread runs the operation.
func (r *Ring) Socket(domain, typ, proto int) (int, error) {
	return result(r.submit(sqe{opcode: opSocket, fd: int32(domain), off: uint64(typ), len: uint32(proto)}, nil))
}

// Connect is connect(2) as IORING_OP_CONNECT.
func (r *Ring) Connect(fd int, dst netip.AddrPort) error {
	sa, n := rawSockaddr(dst)
	_, err := result(r.submit(sqe{opcode: opConnect, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&sa[0]))), off: uint64(n)}, sa))
	return err
}

// Sendmsg is sendmsg(2) as IORING_OP_SENDMSG with a destination address,
// as on an unconnected datagram socket. It returns the bytes sent.
func (r *Ring) Sendmsg(fd int, dst netip.AddrPort, data []byte) (int, error) {
	sa, n := rawSockaddr(dst)
	// One object, so that keeping it keeps everything the kernel reads.
	m := &struct {
		msg  unix.Msghdr
		iov  unix.Iovec
		sa   *[unix.SizeofSockaddrInet6]byte
		data []byte
	}{sa: sa, data: data}
	m.iov = unix.Iovec{Base: unsafe.SliceData(data)}
	m.iov.SetLen(len(data))
	m.msg = unix.Msghdr{Name: &sa[0], Namelen: n, Iov: &m.iov}
	m.msg.SetIovlen(1)
	return result(r.submit(sqe{opcode: opSendmsg, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&m.msg)))}, m))
}

// rawSockaddr encodes dst as a struct sockaddr_in or sockaddr_in6; x/sys/unix
// keeps its own encoder private.
func rawSockaddr(dst netip.AddrPort) (*[unix.SizeofSockaddrInet6]byte, uint32) {
	var b [unix.SizeofSockaddrInet6]byte
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	if a := dst.Addr(); a.Is4() {
		binary.NativeEndian.PutUint16(b[0:], unix.AF_INET)
		a4 := a.As4()
		copy(b[4:], a4[:])
		return &b, unix.SizeofSockaddrInet4
	}
	binary.NativeEndian.PutUint16(b[0:], unix.AF_INET6)
	a16 := dst.Addr().As16()
	copy(b[8:], a16[:])
	return &b, unix.SizeofSockaddrInet6
}
