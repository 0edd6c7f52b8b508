//go:build linux

package fanotify

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
)

type counterKey struct {
	kind  events.Kind
	op    events.Op
	audit bool
}

// counters are exact: every verdict is counted under the mutex, whether or
// not its event fits in the channel.
type counters struct {
	mu         sync.Mutex
	violations map[counterKey]uint64
	drops      uint64
	health     Health
	decisions  atomic.Uint64 // Health.Decisions
}

// Health counts what went wrong in the decision loop itself.
type Health struct {
	Timeouts  uint64 // sandboxed opens denied because no verdict came in time
	Overloads uint64 // sandboxed opens denied because every worker was busy
	Overflows uint64 // queue overflow notices (should stay 0: unlimited queue)

	// Watching says whether directories created after Add are marked
	// (the directory watcher started; it needs Linux 5.9).
	Watching bool
	// GrownDirs counts the directory marks set after Add because a
	// directory appeared in a marked tree (mkdir, git clone, tar x, mv).
	GrownDirs uint64
	// UnmarkedDirs counts new directories left unmarked because their
	// sandbox had reached MaxWalkDirs: name rules are not enforced in them.
	UnmarkedDirs uint64
	// TruncatedWalks counts walks at Add that stopped at MaxWalkDirs.
	TruncatedWalks uint64
	// WatchOverflows counts overflows of the watcher's queue; each one
	// makes aigate scan the marked trees for directories it missed.
	WatchOverflows uint64
	// SkippedWatchEvents counts the moves and deletes dropped unexamined
	// in directories watched only for some names (above.go): in /tmp,
	// every other deleter's.
	SkippedWatchEvents uint64
	// Decisions counts the sandboxed events decided (by the reader or a
	// worker): each is a round trip an opener inside a sandbox paid.
	Decisions uint64
	// LateIgnoreMarks counts the ignore masks set on a file after a
	// sandboxed open of it was found unrelated to every sandbox (a file
	// created after Add: ignorenew.go), sparing its later opens the
	// round trip.
	LateIgnoreMarks uint64
}

func (c *counters) violation(k events.Kind, op events.Op, audit bool) {
	c.mu.Lock()
	if c.violations == nil {
		c.violations = map[counterKey]uint64{}
	}
	c.violations[counterKey{k, op, audit}]++
	c.mu.Unlock()
}

func (c *counters) dropped()  { c.mu.Lock(); c.drops++; c.mu.Unlock() }
func (c *counters) timeout()  { c.mu.Lock(); c.health.Timeouts++; c.mu.Unlock() }
func (c *counters) overload() { c.mu.Lock(); c.health.Overloads++; c.mu.Unlock() }
func (c *counters) overflow() { c.mu.Lock(); c.health.Overflows++; c.mu.Unlock() }

func (c *counters) grownDir()       { c.mu.Lock(); c.health.GrownDirs++; c.mu.Unlock() }
func (c *counters) unmarkedDir()    { c.mu.Lock(); c.health.UnmarkedDirs++; c.mu.Unlock() }
func (c *counters) truncated(n int) { c.mu.Lock(); c.health.TruncatedWalks += uint64(n); c.mu.Unlock() }
func (c *counters) watchOverflow()  { c.mu.Lock(); c.health.WatchOverflows++; c.mu.Unlock() }
func (c *counters) watchSkipped()   { c.mu.Lock(); c.health.SkippedWatchEvents++; c.mu.Unlock() }
func (c *counters) decided()        { c.decisions.Add(1) } // per event: no lock
func (c *counters) lateIgnored()    { c.mu.Lock(); c.health.LateIgnoreMarks++; c.mu.Unlock() }

func (c *counters) snapshot() enforce.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := enforce.Stats{EventsDropped: c.drops}
	for k, v := range c.violations {
		s.Violations = append(s.Violations, enforce.Counter{Kind: k.kind, Op: k.op, Audit: k.audit, Value: v})
	}
	sort.Slice(s.Violations, func(i, j int) bool {
		a, b := s.Violations[i], s.Violations[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Op != b.Op {
			return a.Op < b.Op
		}
		return !a.Audit && b.Audit
	})
	return s
}

// Health reports the decision loop's own failures.
func (b *Backend) Health() Health {
	b.stats.mu.Lock()
	defer b.stats.mu.Unlock()
	h := b.stats.health
	h.Decisions = b.stats.decisions.Load()
	h.Watching = b.watch != nil
	return h
}
