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

// subKeep is the largest queue a subscriber keeps once it has caught up;
// a larger one, grown by a burst, goes back to the garbage collector. A
// session is mostly idle, and the agent may hold a thousand of them: a
// queue allocated whole (1,024 events of 232 bytes) cost each ~232 KiB.
const subKeep = 16

// sub is one reader of events: a watch or a session.
type sub struct {
	uid     uint32 // who reads: root sees all, others their own sandboxes
	root    bool
	sandbox string      // "" = every sandbox the reader may see
	kind    events.Kind // "" = every kind
	// fold: the reader takes events with a count (api.Folds), so a
	// denial identical to one still unread is added to its count.
	fold    bool
	binary  bool // the reader takes events in binary batches (api.BinaryEvents)
	movedTo bool // the reader knows events.Event.MovedTo (api.MovesAside)
	dropped atomic.Uint64

	// The queue: a ring of the unread events, grown on demand up to
	// subBuffer and shrunk when empty; ready holds a token while it is
	// not empty.
	mu    sync.Mutex
	ring  []events.Event
	first int // index in ring of the oldest unread event
	n     int // unread events
	ready chan struct{}
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

// foldDepth is how many of the newest unread events push compares a
// denial with: a flood from a few threads interleaves their identical
// denials (one per thread id), and each thread's folds into its own.
const foldDepth = 4

// push queues e, or folds it into an identical unread event, or reports
// false when subBuffer events are unread.
func (s *sub) push(e *events.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fold {
		for i := range min(s.n, foldDepth) {
			q := &s.ring[(s.first+s.n-1-i)%len(s.ring)]
			if q.SameDenial(e) {
				q.Count = q.N() + e.N()
				return true // the reader's token is there: n > 0
			}
		}
	}
	if s.n == len(s.ring) {
		if s.n == subBuffer {
			return false
		}
		grown := make([]events.Event, min(max(2*len(s.ring), 4), subBuffer))
		k := copy(grown, s.ring[s.first:])
		copy(grown[k:], s.ring[:s.first])
		s.ring, s.first = grown, 0
	}
	s.ring[(s.first+s.n)%len(s.ring)] = *e
	s.n++
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest unread event; ok is false when there is none.
// forReader is e as s's reader can take it: without MovedTo for one
// that would refuse the event (and, in a batch, every event after it).
func (s *sub) forReader(e events.Event) events.Event {
	if !s.movedTo {
		e.MovedTo = ""
	}
	return e
}

func (s *sub) pop() (e events.Event, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		return e, false
	}
	e = s.ring[s.first]
	s.ring[s.first] = events.Event{} // its strings are garbage once read
	s.first = (s.first + 1) % len(s.ring)
	s.n--
	switch {
	case s.n > 0:
		// The token was taken to get here: put it back for the rest.
		select {
		case s.ready <- struct{}{}:
		default:
		}
	case len(s.ring) > subKeep:
		s.ring, s.first = nil, 0
	}
	return e, true
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
	s.ready = make(chan struct{}, 1)
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
		ev, lost := &e, uint64(0)
		if e.Count != 0 && !s.fold {
			// Folded before the fan-out (the ring-buffer reader): a
			// reader that knows no counts gets one denial, and the
			// others as dropped.
			one := e
			one.Count = 0
			ev, lost = &one, e.N()-1
		}
		if !s.push(ev) {
			lost = e.N()
		}
		if lost > 0 {
			s.dropped.Add(lost)
			f.dropped.Add(lost)
		}
	}
}
