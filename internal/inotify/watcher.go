//go:build linux

package inotify

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Watcher is an inotify instance whose records a goroutine of its own
// reads and hands to a function, until Close. Its descriptor is reached
// only through SyscallConn, which holds the file open for the call: a
// watch added or removed as Close runs fails instead of reaching a
// descriptor number the process may have reused.
type Watcher struct {
	f    *os.File
	done chan struct{}
}

// NewWatcher starts reading a new inotify instance: fn gets each record,
// in order, on the reader's goroutine.
func NewWatcher(fn func(Event)) (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &Watcher{f: os.NewFile(uintptr(fd), "inotify"), done: make(chan struct{})}
	go w.read(fn)
	return w, nil
}

func (w *Watcher) read(fn func(Event)) {
	defer close(w.done)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		Each(buf[:n], fn)
	}
}

// Add watches path for the events of mask; it returns the watch
// descriptor the records of path carry (the same one again for a path
// already watched).
func (w *Watcher) Add(path string, mask uint32) (int, error) {
	wd := -1
	err := w.control(func(fd int) (err error) {
		wd, err = unix.InotifyAddWatch(fd, path, mask)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("watch %s: %w", path, err)
	}
	return wd, nil
}

// Remove ends watch wd. It fails harmlessly for one the kernel has
// already ended (its file gone: IN_IGNORED).
func (w *Watcher) Remove(wd int) {
	_ = w.control(func(fd int) error {
		_, err := unix.InotifyRmWatch(fd, uint32(wd))
		return err
	})
}

func (w *Watcher) control(f func(fd int) error) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Close ends the instance and waits for the reader to return: no call of
// fn starts after it.
func (w *Watcher) Close() {
	w.f.Close()
	<-w.done
}
