//go:build linux

package netns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// OpenIn calls open on a thread in the network namespace ns (a
// descriptor of a /proc/PID/ns/net) and returns what it returned. The
// thread is a goroutine's of its own, locked to it: back in the caller's
// namespace it is unlocked, not ended (ending a thread kills the children
// started from it with Pdeathsig); only a thread that could not come back
// stays locked, and so ends with the goroutine: no other goroutine ever
// runs in the other namespace. A descriptor open made there is closed
// when the thread cannot come back.
func OpenIn(ns int, open func() (int, error)) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, fmt.Errorf("own network namespace: %w", err)}
			return
		}
		defer home.Close()
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, fmt.Errorf("enter the network namespace: %w", err)}
			return
		}
		fd, openErr := open()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			done <- result{-1, fmt.Errorf("return to the network namespace: %w", err)}
			return // still locked: the thread ends
		}
		runtime.UnlockOSThread()
		done <- result{fd, openErr}
	}()
	r := <-done
	return r.fd, r.err
}
