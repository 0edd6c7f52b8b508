package forksafe

import (
	"math"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

var (
	// answering: this process has held a fanotify permission group, and
	// Start must keep collections off. Never unset: the cost is a
	// collection per fork.
	answering atomic.Bool

	mu      sync.Mutex
	active  int
	percent int   // the GC percent to restore when the last Start ends
	limit   int64 // and the memory limit, which would start one too
)

// Start is cmd.Start with no garbage collection able to begin until the
// child has exec'ed (Start returns only then).
//
// Go forks with CLONE_VFORK: the forking thread stays in a raw clone
// syscall, holding its P with signals blocked, until the child execs. When
// the exec'ed file (or a directory above it) carries a fanotify permission
// mark of a group this process reads, the exec waits for this process's
// reader goroutine to answer. A garbage collection that starts meanwhile
// stops the world: it waits for the forking thread, which waits for the
// child, which waits for the reader, which the stopped world holds. The
// process hangs for good, and so does every open of a marked file on the
// machine.
//
// What a process with a group forks: the fanotify guard, at once and
// before any mark (plain cmd.Start); in an embedded `aigate run`, the exec
// helper of a command with masked output (mask_output), after its
// sandbox's marks exist: aigate's own binary, which may lie in the marked
// project or home (./bin/aigate, ~/go/bin/aigate). The helper of every
// other run is forked before the embedded agent opens its group (run's
// prepareEarly), and the command is exec'ed by the helper, another
// process. With the collector off from before the fork until the exec, no
// collection can start in between. It costs a collection per fork
// (BenchmarkStart: 2.9-4.2 ms against 0.36-0.50 ms with 16 MiB live).
//
// Other stops of the world (runtime.GC, ReadMemStats, a stack dump of
// every goroutine, a GOMAXPROCS change) are not held off: aigate makes
// none of them while it forks.
//
// In a process that has not called Answering, Start is cmd.Start.
func Start(cmd *exec.Cmd) error {
	if !answering.Load() {
		return cmd.Start()
	}
	gcOff()
	defer gcOn()
	return cmd.Start()
}

// Answering tells Start that this process answers fanotify permission
// events: the fanotify backend calls it when it creates its group.
func Answering() { answering.Store(true) }

// gcOff turns the collector off for the first of concurrent Starts, and
// then finishes every collection under way: debug.SetGCPercent waits for
// a marking phase, but not for a collection that passed its trigger
// before and is still stopping the world to begin (measured: forks hung
// that way within a few forks under constant collection). runtime.GC
// waits for that one and runs one more; after it none can begin.
func gcOff() {
	mu.Lock()
	defer mu.Unlock()
	if active == 0 {
		percent = debug.SetGCPercent(-1)
		limit = debug.SetMemoryLimit(math.MaxInt64)
		runtime.GC()
	}
	active++
}

func gcOn() {
	mu.Lock()
	defer mu.Unlock()
	active--
	if active == 0 {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(percent)
	}
}
