//go:build linux

package llaudit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/netns"
)

// auditStatus is struct audit_status up to backlog_wait_time_actual.
type auditStatus struct {
	Mask, Enabled, Failure, PID, RateLimit, BacklogLimit, Lost, Backlog uint32
	FeatureBitmap, BacklogWaitTime, BacklogWaitTimeActual               uint32
}

// Enabled reports whether the kernel's audit is enabled (1) or locked (2).
func Enabled() (bool, error) {
	s, err := status()
	if err != nil {
		return false, err
	}
	return s.Enabled != 0, nil
}

// SetEnabled enables or disables the kernel's audit and returns whether it
// was enabled before. It needs CAP_AUDIT_CONTROL. Enabling it costs every
// process created afterwards an audit context, until the next boot
// (docs/backends.md, "Landlock refusals").
func SetEnabled(on bool) (bool, error) {
	before, err := Enabled()
	if err != nil {
		return false, err
	}
	s := auditStatus{Mask: unix.AUDIT_STATUS_ENABLED}
	if on {
		s.Enabled = 1
	}
	if err := request(unix.AUDIT_SET, unsafe.Slice((*byte)(unsafe.Pointer(&s)), unsafe.Sizeof(s)), nil); err != nil {
		return before, fmt.Errorf("set audit enabled=%t: %w", on, err)
	}
	return before, nil
}

func status() (auditStatus, error) {
	var s auditStatus
	err := request(unix.AUDIT_GET, nil, func(typ uint16, data []byte) bool {
		if typ != unix.AUDIT_GET {
			return false
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&s)), unsafe.Sizeof(s)), data)
		return true
	})
	if err != nil {
		return s, fmt.Errorf("read audit status: %w", err)
	}
	return s, nil
}

// request sends one audit request on a socket of the initial network
// namespace and reads until the kernel's acknowledgement, or until reply
// took a message.
func request(typ uint16, payload []byte, reply func(uint16, []byte) bool) error {
	fd, err := socket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}); err != nil {
		return err
	}
	b := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(b[0:], uint32(unix.NLMSG_HDRLEN+len(payload)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(b[8:], 1)
	b = append(b, payload...)
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		t, data, ok := message(buf[:n])
		if !ok {
			continue
		}
		if t == unix.NLMSG_ERROR {
			if len(data) < 4 {
				return errors.New("short netlink error")
			}
			if errno := -int32(binary.NativeEndian.Uint32(data)); errno != 0 {
				return unix.Errno(errno)
			}
			if reply == nil {
				return nil
			}
			continue // the ack of a request with a reply comes first
		}
		if reply != nil && reply(t, data) {
			return nil
		}
	}
}

// message is the type and payload of the one netlink message in a
// datagram. Audit's records are not padded to netlink's alignment, so
// the datagram is taken as it is, bounded by its header's length.
func message(b []byte) (uint16, []byte, bool) {
	if len(b) < unix.NLMSG_HDRLEN {
		return 0, nil, false
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l < unix.NLMSG_HDRLEN || l > len(b) {
		l = len(b)
	}
	return binary.NativeEndian.Uint16(b[4:]), b[unix.NLMSG_HDRLEN:l], true
}

// socket opens a NETLINK_AUDIT socket in the initial network namespace:
// the kernel multicasts audit records there only, and an agent in a
// network namespace of its own (a test harness's private one) would hear
// nothing. That namespace is pid 1's; where pid 1's is out of reach (a
// Landlock domain around the agent), the nearest ancestor's in another
// namespace stands for it.
func socket() (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	}
	target := initNetns()
	if target == nil {
		return open()
	}
	defer target.Close()
	fd, err := netns.OpenIn(int(target.Fd()), open)
	if err != nil {
		return -1, fmt.Errorf("audit socket in the initial network namespace: %w", err)
	}
	return fd, nil
}

// initNetns opens the initial network namespace when this process is in
// another one; nil when it is in it already (or no other can be opened).
func initNetns() *os.File {
	var self unix.Stat_t
	if unix.Stat("/proc/self/ns/net", &self) != nil {
		return nil
	}
	other := func(pid int) *os.File {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) != nil || st.Ino == self.Ino {
			f.Close()
			return nil
		}
		return f
	}
	if f := other(1); f != nil {
		return f
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/1/ns/net", &st); err == nil && st.Ino == self.Ino {
		return nil // pid 1's namespace is ours
	}
	for pid, n := os.Getppid(), 0; pid > 1 && n < 64; n++ {
		if f := other(pid); f != nil {
			return f
		}
		pid = parentOf(pid)
	}
	return nil
}

// parentOf is the parent pid of pid from /proc/PID/stat, 0 when unknown.
func parentOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	var state string
	var ppid int
	if _, err := fmt.Sscanf(s[i+1:], " %s %d", &state, &ppid); err != nil {
		return 0
	}
	return ppid
}

// Reader receives the audit records the kernel multicasts to the read-log
// group (needs CAP_AUDIT_READ; auditd, if any, is not disturbed).
type Reader struct {
	fd  int
	buf []byte
}

// OpenReader joins the read-log group.
func OpenReader() (*Reader, error) {
	fd, err := socket()
	if err != nil {
		return nil, fmt.Errorf("open audit socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.AUDIT_NLGRP_READLOG - 1)}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("join the audit read-log group (needs CAP_AUDIT_READ): %w", err)
	}
	// A burst of records must not be lost while the agent is busy.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	return &Reader{fd: fd, buf: make([]byte, 1<<16)}, nil
}

// Read waits up to timeout for the next record of a Wanted type and
// returns it parsed; ok false when none came (or an unparsable one, or
// the socket overflowed: records were lost, counted in lost).
func (r *Reader) Read(timeout time.Duration) (rec Record, ok bool, lost bool, err error) {
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return rec, false, false, err
	}
	n, _, err := unix.Recvfrom(r.fd, r.buf, 0)
	switch {
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
		return rec, false, false, nil
	case errors.Is(err, unix.ENOBUFS):
		return rec, false, true, nil
	case err != nil:
		return rec, false, false, fmt.Errorf("read audit records: %w", err)
	}
	typ, data, ok := message(r.buf[:n])
	if !ok || !Wanted(typ) {
		return rec, false, false, nil
	}
	rec, err = Parse(typ, data)
	if err != nil {
		return rec, false, false, nil
	}
	return rec, true, false, nil
}

// Close closes the socket.
func (r *Reader) Close() error { return unix.Close(r.fd) }

// Reporting says whether Landlock's refusals reach a reader of the audit
// records now: reading tells whether one (the agent) listens. Reading the
// audit status needs CAP_AUDIT_CONTROL.
func Reporting(reading bool) string {
	on, err := Enabled()
	switch {
	case err != nil:
		return fmt.Sprintf("unknown: cannot read the kernel's audit status (%v)", err)
	case !on:
		return "not reported: the kernel's audit is disabled, and Landlock reports refusals only to audit; `sudo aigate setup --landlock-audit` enables it (a cost to every process, docs/backends.md)"
	case !reading:
		return "not reported: audit is enabled but no agent reads its records"
	}
	return "reported (from the kernel's audit records)"
}
