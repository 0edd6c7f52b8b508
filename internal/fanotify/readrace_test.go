//go:build linux

package fanotify

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

var _ = registerHelper("openstorm", func(args []string) string {
	// openstorm PATH THREADS N: THREADS threads open PATH read-only N times
	// each, at once; prints "ok" or how many opens failed, and how.
	threads, _ := strconv.Atoi(args[1])
	n, _ := strconv.Atoi(args[2])
	var mu sync.Mutex
	failed := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for j := 0; j < n; j++ {
				fd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					mu.Lock()
					failed[errnoName(err)]++
					mu.Unlock()
					continue
				}
				unix.Close(fd)
			}
		}()
	}
	wg.Wait()
	if len(failed) == 0 {
		return "ok"
	}
	return fmt.Sprint(failed)
})

// TestDenyWriteConcurrentReads: read-only opens of a deny_write file from
// many threads at once are all allowed. Every answer to a permission event
// wakes all the threads waiting on the group, so a thread can be seen
// running for a moment while it still waits for its own answer; its
// /proc/TID/syscall then says "running", which must not be taken for an
// unreadable open (and refused as a write).
func TestDenyWriteConcurrentReads(t *testing.T) {
	e := newEnv(t, nil)
	lock := e.write(filepath.Join(e.project, "go.lock"), "x")
	s := e.sandbox(policy.Policy{DenyWrite: rules("*.lock")})
	if got := e.run(s, "openstorm", lock, "16", "500"); got != "ok" {
		t.Fatalf("read-only opens of deny_write %s from 16 threads: %s, want all allowed", lock, got)
	}
	e.noEvent()
}

// TestDenyWriteLongRunningReader: an opener of a deny_write file that
// stays "running" in /proc/TID/syscall for longer than a moment (woken by
// other answers, then waiting for a CPU on a loaded machine: 200 ms and
// more at load 20) is waited out until the event's deadline, not refused
// as a write after a patience of its own. Here every thread's reads say
// "running" for its first 400 ms of reads, well within DecisionTimeout; the read-only open is
// allowed and the open for writing still refused.
func TestDenyWriteLongRunningReader(t *testing.T) {
	var mu sync.Mutex
	first := map[int]time.Time{}
	e := newEnv(t, func(o *Options) {
		o.syscallRunning = func(tid int) bool {
			mu.Lock()
			defer mu.Unlock()
			t0, ok := first[tid]
			if !ok {
				t0 = time.Now()
				first[tid] = t0
			}
			return time.Since(t0) < 400*time.Millisecond
		}
	})
	lock := e.write(filepath.Join(e.project, "go.lock"), "x")
	s := e.sandbox(policy.Policy{DenyWrite: rules("*.lock")})
	if got := e.run(s, "open", lock, "r"); got != "ok" {
		t.Fatalf("read-only open of deny_write %s by a thread seen running for 400 ms: %s, want ok", lock, got)
	}
	e.noEvent()
	if got := e.run(s, "open", lock, "w"); got != "EPERM" {
		t.Fatalf("open for writing of deny_write %s by a thread seen running for 400 ms: %s, want EPERM", lock, got)
	}
	if ev := e.event(); ev.Op != events.OpWrite || ev.Path != lock {
		t.Fatalf("event %+v, want the refused write of %s", ev, lock)
	}
	if h := e.b.Health(); h.Timeouts != 0 {
		t.Fatalf("health %+v: a decision timed out", h)
	}
}
