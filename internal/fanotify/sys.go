//go:build linux

package fanotify

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/forksafe"
)

// Flags of the fanotify group.
//
// FAN_CLASS_CONTENT is the class that may answer permission events.
// FAN_REPORT_TID reports the opening thread rather than its process: the
// thread is what is blocked in open(2), so /proc/TID/syscall shows the open's
// flags (see write.go).
// FAN_UNLIMITED_QUEUE is required for failing closed: when a bounded queue is
// full the kernel drops the permission event and ALLOWS the open
// (fanotify_handle_event frees the unqueued event and returns 0). Only
// permission events are ever queued on this group and each one holds a
// blocked thread, so the queue is bounded by the number of threads anyway.
// FAN_UNLIMITED_MARKS: the bounded walks (marks.go) set their own limits.
const (
	initFlags      = unix.FAN_CLASS_CONTENT | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK | unix.FAN_REPORT_TID | unix.FAN_UNLIMITED_QUEUE | unix.FAN_UNLIMITED_MARKS
	eventOpenFlags = unix.O_RDONLY | unix.O_LARGEFILE | unix.O_CLOEXEC | unix.O_NOATIME

	permMask = unix.FAN_OPEN_PERM | unix.FAN_OPEN_EXEC_PERM
)

const metadataSize = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))

// event is one permission request read from the group.
type event struct {
	fd   int    // the opened file, opened again for us with eventOpenFlags
	mask uint64 // FAN_OPEN_PERM or FAN_OPEN_EXEC_PERM
	tid  int    // the opening thread (FAN_REPORT_TID); 0 when outside our pid namespace
	// group is the group it was read from, which the answer goes to:
	// the backend's, or the filesystem exec marks' (execfs.go).
	group int
}

// initGroup creates the fanotify group.
func initGroup() (int, error) {
	fd, err := unix.FanotifyInit(initFlags, eventOpenFlags)
	if err != nil {
		return -1, fmt.Errorf("fanotify_init: %w", explainInit(err))
	}
	// From now on a fork of a file the group marks waits for this
	// process's reader: forks must keep the collector off.
	forksafe.Answering()
	return fd, nil
}

func explainInit(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (permission events need CAP_SYS_ADMIN: run aigate with sudo)", err)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("%w (the kernel lacks fanotify permission events: CONFIG_FANOTIFY_ACCESS_PERMISSIONS)", err)
	}
	return err
}

// parseEvents splits a buffer read from the group. Events with a version
// other than the one this code knows are a hard error: their layout is unknown
// and answering them blindly could allow what should be denied.
func parseEvents(buf []byte, out []event, group int) ([]event, error) {
	for len(buf) >= metadataSize {
		m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[0]))
		if m.Vers != unix.FANOTIFY_METADATA_VERSION {
			return out, fmt.Errorf("fanotify metadata version %d, want %d", m.Vers, unix.FANOTIFY_METADATA_VERSION)
		}
		n := int(m.Event_len)
		if n < metadataSize || n > len(buf) {
			return out, fmt.Errorf("fanotify event length %d out of range", n)
		}
		out = append(out, event{fd: int(m.Fd), mask: m.Mask, tid: int(m.Pid), group: group})
		buf = buf[n:]
	}
	return out, nil
}

// respond answers one permission event. FAN_DENY makes the opener's open(2)
// or execve(2) fail with EPERM.
func respond(group, fd int, allow bool) error {
	r := unix.FanotifyResponse{Fd: int32(fd), Response: unix.FAN_DENY}
	if allow {
		r.Response = unix.FAN_ALLOW
	}
	b := (*[unsafe.Sizeof(r)]byte)(unsafe.Pointer(&r))[:]
	for {
		_, err := unix.Write(group, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("answer fanotify event: %w", err)
		}
		return nil
	}
}
