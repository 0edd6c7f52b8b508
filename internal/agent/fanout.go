//go:build linux

package agent

import (
	"sync"
	"sync/atomic"

	"github.com/aigate-dev/aigate/internal/events"
)

// subBuffer is how many events a subscriber may fall behind before its
// events are dropped (and counted) rather than slowing everyone down.
const subBuffer = 1024

// sub is one reader of events: a watch or a session.
type sub struct {
	uid     uint32 // who reads: root sees all, others their own sandboxes
	root    bool
	sandbox string      // "" = every sandbox the reader may see
	kind    events.Kind // "" = every kind
	ch      chan events.Event
	dropped atomic.Uint64
}

func (s *sub) wants(e *events.Event, owner uint32, known bool) bool {
	if !s.root && (!known || owner != s.uid) {
		return false
	}
	if s.sandbox != "" && e.Sandbox != s.sandbox {
		return false
	}
	return s.kind == "" || e.Kind == s.kind
}

// fanout hands each event to the subscribers that may and want to see it.
// One goroutine delivers, so every subscriber sees events in the order the
// backend produced them; a full subscriber loses events, never the others.
type fanout struct {
	mu      sync.Mutex
	subs    map[*sub]struct{}
	dropped atomic.Uint64 // over all subscribers, for the metrics
}

func newFanout() *fanout { return &fanout{subs: make(map[*sub]struct{})} }

func (f *fanout) add(s *sub) {
	s.ch = make(chan events.Event, subBuffer)
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.mu.Unlock()
}

func (f *fanout) remove(s *sub) {
	f.mu.Lock()
	delete(f.subs, s)
	f.mu.Unlock()
}

func (f *fanout) publish(e events.Event, owner uint32, known bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		if !s.wants(&e, owner, known) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
			f.dropped.Add(1)
		}
	}
}
