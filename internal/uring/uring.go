//go:build linux

package uring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opcodes and flags from include/uapi/linux/io_uring.h. x/sys/unix does not
// define them; the values are ABI and never change.
const (
	opSendmsg = 9
	opConnect = 16
	opOpenat  = 18
	opSocket  = 45 // Linux 5.19

	sqeAsync = 1 << 4 // IOSQE_ASYNC: skip the inline attempt, run in io-wq

	setupSQPoll = 1 << 1 // IORING_SETUP_SQPOLL

	enterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS
	enterSQWakeup  = 1 << 1 // IORING_ENTER_SQ_WAKEUP

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// Mode says which kernel context performs the operations.
type Mode int

const (
	// Inline: the submitting thread, inside io_uring_enter (falling back to
	// an io-wq worker when the operation would block).
	Inline Mode = iota
	// Worker: always an io-wq worker thread (IOSQE_ASYNC).
	Worker
	// SQPoll: the ring's submission-queue polling thread, which the kernel
	// creates at setup; no io_uring_enter is needed to submit.
	SQPoll
)

func (m Mode) String() string {
	switch m {
	case Inline:
		return "inline"
	case Worker:
		return "io-wq"
	case SQPoll:
		return "sqpoll"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode is the inverse of Mode.String.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Inline, Worker, SQPoll} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown io_uring mode %q (inline, io-wq, sqpoll)", s)
}

// params is struct io_uring_params.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	fileIndex   uint32
	addr3       uint64
	_           uint64
}

// cqe is struct io_uring_cqe without the IORING_SETUP_CQE32 extension.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Ring is one io_uring instance. Its methods are not safe for concurrent use.
type Ring struct {
	fd   int
	mode Mode
	// The three shared mappings: submission ring, completion ring, SQEs.
	sqMap, cqMap, sqeMap []byte
	p                    params
	seq                  uint64
	// keep holds the memory the in-flight SQE points to. Storing it here
	// makes it escape to the heap, which Go never moves; a stack object
	// could move when the goroutine's stack grows, under the kernel's feet.
	keep any
}

// New sets up a ring with a few entries whose operations run in mode.
func New(mode Mode) (*Ring, error) {
	r := &Ring{fd: -1, mode: mode}
	if mode == SQPoll {
		r.p.flags = setupSQPoll
		r.p.sqThreadIdle = 1000 // ms before the thread sleeps
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&r.p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup (%s): %w", mode, errno)
	}
	r.fd = int(fd)
	var err error
	if r.sqMap, err = r.mmap(offSQRing, r.p.sqOff.array+r.p.sqEntries*4); err != nil {
		return nil, err
	}
	if r.cqMap, err = r.mmap(offCQRing, r.p.cqOff.cqes+r.p.cqEntries*uint32(unsafe.Sizeof(cqe{}))); err != nil {
		return nil, err
	}
	if r.sqeMap, err = r.mmap(offSQEs, r.p.sqEntries*uint32(unsafe.Sizeof(sqe{}))); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Ring) mmap(off int64, size uint32) ([]byte, error) {
	b, err := unix.Mmap(r.fd, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("mmap io_uring region %#x: %w", off, err)
	}
	return b, nil
}

// Close unmaps the rings and closes the ring's descriptor.
func (r *Ring) Close() error {
	for _, m := range [][]byte{r.sqMap, r.cqMap, r.sqeMap} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	r.sqMap, r.cqMap, r.sqeMap = nil, nil, nil
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

func (r *Ring) u32(m []byte, off uint32) *uint32 {
	return (*uint32)(unsafe.Pointer(&m[off]))
}

// submit queues s, waits for its completion and returns the CQE's result:
// a non-negative value, or a negated errno. keep is the memory s points to.
func (r *Ring) submit(s sqe, keep any) (int32, error) {
	r.keep = keep
	defer func() { r.keep = nil }()
	if r.mode == Worker {
		s.flags |= sqeAsync
	}
	r.seq++
	s.userData = r.seq
	tail := atomic.LoadUint32(r.u32(r.sqMap, r.p.sqOff.tail))
	idx := tail & *r.u32(r.sqMap, r.p.sqOff.ringMask)
	*(*sqe)(unsafe.Pointer(&r.sqeMap[uintptr(idx)*unsafe.Sizeof(s)])) = s
	*r.u32(r.sqMap, r.p.sqOff.array+4*idx) = idx
	// The release store that publishes the SQE to the kernel (or to the
	// SQPOLL thread, which may be reading the tail right now).
	atomic.StoreUint32(r.u32(r.sqMap, r.p.sqOff.tail), tail+1)

	toSubmit, flags := uintptr(0), uintptr(enterGetEvents)
	if r.mode == SQPoll {
		// The kernel ignores to_submit with SQPOLL; wake the thread in
		// case it went idle.
		flags |= enterSQWakeup
	}
	for {
		head := atomic.LoadUint32(r.u32(r.cqMap, r.p.cqOff.head))
		if head != atomic.LoadUint32(r.u32(r.cqMap, r.p.cqOff.tail)) {
			idx := head & *r.u32(r.cqMap, r.p.cqOff.ringMask)
			c := *(*cqe)(unsafe.Pointer(&r.cqMap[uintptr(r.p.cqOff.cqes)+uintptr(idx)*unsafe.Sizeof(cqe{})]))
			atomic.StoreUint32(r.u32(r.cqMap, r.p.cqOff.head), head+1)
			if c.userData != r.seq {
				return 0, fmt.Errorf("io_uring completion for request %d, want %d", c.userData, r.seq)
			}
			return c.res, nil
		}
		if r.mode != SQPoll {
			// Zero once the kernel has consumed the SQE: an interrupted
			// wait must not submit it twice.
			toSubmit = uintptr(tail + 1 - atomic.LoadUint32(r.u32(r.sqMap, r.p.sqOff.head)))
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), toSubmit, 1, flags, 0, 0)
		// Go's preemption signals interrupt the wait: go round again.
		if errno != 0 && errno != unix.EINTR {
			return 0, fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
}

// result turns a CQE result into a value and an errno.
func result(res int32, err error) (int, error) {
	if err != nil {
		return -1, err
	}
	if res < 0 {
		return -1, unix.Errno(-res)
	}
	return int(res), nil
}
