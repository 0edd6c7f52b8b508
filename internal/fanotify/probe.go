//go:build linux

package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// fanotifyTimeout bounds the wait for the probe's own permission event.
const fanotifyTimeout = 2 * time.Second

// Probe proves what the fanotify backend relies on (for `aigate doctor`), end to end: a
// FAN_CLASS_CONTENT group, a FAN_OPEN_PERM|FAN_OPEN_EXEC_PERM mark on a
// test file, the event of an open of it, and a FAN_DENY answer that makes
// that open fail with EPERM. Only the test file is marked; closing the
// group lets an open still waiting through (the kernel allows pending
// events of a closed group), so the probe cannot leave a thread hanging.
func Probe() error {
	dir, err := os.MkdirTemp("", "aigate-doctor-")
	if err != nil {
		return fmt.Errorf("create a test file: %w", err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "probe")
	if err := os.WriteFile(file, []byte("aigate doctor\n"), 0o600); err != nil {
		return fmt.Errorf("create a test file: %w", err)
	}

	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return fmt.Errorf("fanotify_init(FAN_CLASS_CONTENT): %w", err)
	}
	group := os.NewFile(uintptr(fd), "fanotify")
	closed := false
	closeGroup := func() {
		if !closed {
			group.Close()
			closed = true
		}
	}
	defer closeGroup()
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM|unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, file); err != nil {
		return fmt.Errorf("fanotify_mark(FAN_OPEN_PERM|FAN_OPEN_EXEC_PERM) on a test file: %w", err)
	}

	opened := make(chan error, 1)
	go func() {
		f, err := os.Open(file)
		if err == nil {
			f.Close()
		}
		opened <- err
	}()
	answerErr := answerOne(fd, fanotifyTimeout)
	// Whatever happened, the opener must not wait on this group any more.
	closeGroup()
	var openErr error
	select {
	case openErr = <-opened:
	case <-time.After(fanotifyTimeout):
		return errors.New("the test open did not return after its permission event was answered")
	}
	if answerErr != nil {
		return answerErr
	}
	if !errors.Is(openErr, unix.EPERM) {
		return fmt.Errorf("the test open was answered FAN_DENY but returned %v, not EPERM", openErr)
	}
	return nil
}

// answerOne waits up to timeout for one permission event on the group fd
// and answers it FAN_DENY.
func answerOne(fd int, timeout time.Duration) error {
	const metaLen = 24 // struct fanotify_event_metadata
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("no permission event arrived within %v of opening the marked test file", timeout)
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) || n == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll the fanotify group: %w", err)
		}
		n, err = unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the fanotify group: %w", err)
		}
		if n < metaLen {
			return fmt.Errorf("short fanotify event (%d bytes)", n)
		}
		if v := buf[4]; v != unix.FANOTIFY_METADATA_VERSION {
			return fmt.Errorf("fanotify metadata version %d, want %d", v, unix.FANOTIFY_METADATA_VERSION)
		}
		mask := binary.NativeEndian.Uint64(buf[8:16])
		evfd := int32(binary.NativeEndian.Uint32(buf[16:20]))
		if evfd >= 0 {
			defer unix.Close(int(evfd))
		}
		if mask&unix.FAN_OPEN_PERM == 0 {
			return fmt.Errorf("unexpected fanotify event mask %#x, want FAN_OPEN_PERM", mask)
		}
		resp := make([]byte, 8) // struct fanotify_response
		binary.NativeEndian.PutUint32(resp[0:4], uint32(evfd))
		binary.NativeEndian.PutUint32(resp[4:8], unix.FAN_DENY)
		if _, err := unix.Write(fd, resp); err != nil {
			return fmt.Errorf("answer the permission event: %w", err)
		}
		return nil
	}
}
