//go:build linux

package fanotify

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/bench"
)

// BenchmarkRoundTripFloor measures what a fanotify permission round trip
// costs with nothing decided: a group of its own marks one file for
// FAN_OPEN_PERM, and a reader on a locked thread, blocked in read(2),
// answers every event FAN_ALLOW and closes its fd (no poll, no placing,
// no path, no policy). Its ratio to the same open+close with no mark,
// from a helper process, is the floor under BenchmarkOpen's round trips
// (marked, exec-binary) on this machine: two thread wake-ups and the
// kernel's event and answer.
func BenchmarkRoundTripFloor(b *testing.B) {
	path := filepath.Join(b.TempDir(), "file")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	group, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		buf := make([]byte, 64*metadataSize)
		var evs []event
		for {
			n, err := unix.Read(group, buf)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || n <= 0 {
				return
			}
			evs, _ = parseEvents(buf[:n], evs[:0], group)
			for _, ev := range evs {
				if ev.fd < 0 {
					continue
				}
				_ = respond(group, ev.fd, true)
				unix.Close(ev.fd)
			}
			if stop.Load() {
				return
			}
		}
	}()
	b.Cleanup(func() {
		// One last event wakes the blocked reader, which then stops; a
		// reader that has stopped on an error would answer no one.
		stop.Store(true)
		select {
		case <-done:
		default:
			if err := unix.FanotifyMark(group, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM, unix.AT_FDCWD, path); err != nil {
				b.Errorf("mark %s to stop the reader: %v", path, err)
				break
			}
			if f, err := os.Open(path); err == nil {
				f.Close()
			}
			<-done
		}
		unix.Close(group)
	})
	measure := func() (float64, error) { return helperNs(b, nil, path, b.N), nil }
	r, err := bench.Pair(bench.Rounds(), measure, func() (float64, error) {
		if err := unix.FanotifyMark(group, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM, unix.AT_FDCWD, path); err != nil {
			return 0, err
		}
		defer unix.FanotifyMark(group, unix.FAN_MARK_REMOVE, unix.FAN_OPEN_PERM, unix.AT_FDCWD, path)
		return measure()
	})
	if err != nil {
		b.Fatal(err)
	}
	r.Report(b)
}
