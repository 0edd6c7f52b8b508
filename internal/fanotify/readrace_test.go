//go:build linux

package fanotify

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

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
