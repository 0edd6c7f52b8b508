package run

import (
	"runtime/debug"
	"sync"
)

// Why hold the garbage collector during set-up: run allocates a few MB
// before the command starts (the config and the policy parsed and
// compiled, the agent's JSON), just enough to cross the Go runtime's first
// heap goal of 4 MB, so every run paid one collection on its critical path:
// about 1.4 ms of CPU at low load and, on a loaded machine, stop-the-world
// pauses of several ms (GODEBUG=gctrace=1 of run -- true through an agent).
// Most of what set-up allocates stays live until the end of the run anyway.
// The collector is given back once the command is started, so a command
// that runs for hours runs beside a client collecting as usual. An embedded
// agent (a run as root with none running) gives it back before it starts:
// loading the BPF objects and walking a large home allocate far more.

// gcHoldLimit bounds the heap while the collector is held: past it the
// runtime collects anyway (debug.SetMemoryLimit), should set-up ever
// allocate far more than it does.
const gcHoldLimit = 256 << 20

// gcHold counts the holds (tests run several runs in one process); the
// first saves the settings and the last puts them back.
var gcHold struct {
	sync.Mutex
	n       int
	percent int
	limit   int64
}

// holdGC turns the garbage collector off until release (idempotent) is
// called and no other hold is left.
func holdGC() (release func()) {
	gcHold.Lock()
	if gcHold.n == 0 {
		gcHold.percent = debug.SetGCPercent(-1)
		gcHold.limit = debug.SetMemoryLimit(-1)
		if gcHold.limit > gcHoldLimit {
			debug.SetMemoryLimit(gcHoldLimit)
		}
	}
	gcHold.n++
	gcHold.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			gcHold.Lock()
			defer gcHold.Unlock()
			gcHold.n--
			if gcHold.n == 0 {
				debug.SetGCPercent(gcHold.percent)
				debug.SetMemoryLimit(gcHold.limit)
			}
		})
	}
}
