//go:build linux

package fanotify

import (
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// BenchmarkOpenDevNull measures what watching the virtual consoles costs
// the other opens in /dev: open+close of /dev/null by a process outside
// any sandbox while the watcher's marks stand, as a ratio to the same open
// with no watcher, interleaved (bench.Pair). The cases: "consoles", the
// marks vtopen.go sets (an inode mark on each of tty1..tty63), and
// "dev-on-child", the alternative not taken (/dev marked for the opens of
// all its entries, FAN_OPEN|FAN_EVENT_ON_CHILD, its events read as the
// agent would read them).
func BenchmarkOpenDevNull(b *testing.B) {
	testutil.RequireRoot(b)
	for _, c := range []struct {
		name string
		mark func(w *watcher) error
	}{
		{"consoles", func(w *watcher) error { return w.watchConsoles() }},
		{"dev-on-child", func(w *watcher) error {
			return unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD, unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, consoleDir)
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			r, err := bench.Pair(bench.Rounds(),
				func() (float64, error) { return helperNs(b, nil, "/dev/null", b.N), nil },
				func() (float64, error) {
					w, err := newWatcher()
					if err != nil {
						return 0, err
					}
					defer w.close()
					if err := c.mark(w); err != nil {
						return 0, err
					}
					defer drainWatcher(w.fd)()
					return helperNs(b, nil, "/dev/null", b.N), nil
				})
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
		})
	}
}

// drainWatcher reads and drops the events of the group fd until the
// returned stop is called, as the agent's loop would read them.
func drainWatcher(fd int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64*1024)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			select {
			case <-done:
				return
			default:
			}
			if n, _ := unix.Poll(fds, 10); n > 0 {
				_, _ = unix.Read(fd, buf)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
