//go:build linux

package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
)

// fakeBackend enforces nothing: it records sandboxes and emits the events
// and counters a test tells it to, as a real backend would report them.
type fakeBackend struct {
	mu      sync.Mutex
	added   map[uint32]enforce.Sandbox
	removed []uint32
	stats   enforce.Stats
	ch      chan events.Event
	closed  bool

	// removeDelay is how long Remove takes, as a real backend's map
	// updates do. unconfined lists the sandboxes that had a task in their
	// cgroup while Remove ran: a task that would outlive enforcement.
	removeDelay time.Duration
	unconfined  []string

	// onAdd, when set, runs in Add before the sandbox is recorded (as a
	// backend's work would), and Add fails when it does. It may call
	// sb.Enter, as Composite does.
	onAdd func(sb *enforce.Sandbox) error
}

func newFake() *fakeBackend {
	return &fakeBackend{added: make(map[uint32]enforce.Sandbox), ch: make(chan events.Event, 1<<16)}
}

func (f *fakeBackend) Name() string { return "fake" }

func (f *fakeBackend) Add(_ context.Context, sb *enforce.Sandbox) error {
	f.mu.Lock()
	onAdd := f.onAdd
	f.mu.Unlock()
	if onAdd != nil {
		if err := onAdd(sb); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added[sb.ID] = *sb
	return nil
}

func (f *fakeBackend) Remove(id uint32) error {
	f.mu.Lock()
	sb, ok := f.added[id]
	delay := f.removeDelay
	f.mu.Unlock()
	confined := func() {
		if !ok {
			return
		}
		ev, err := os.ReadFile(filepath.Join(sb.CgroupPath, "cgroup.events"))
		if err == nil && strings.Contains(string(ev), "populated 1") {
			f.mu.Lock()
			f.unconfined = append(f.unconfined, sb.Name)
			f.mu.Unlock()
		}
	}
	confined()
	time.Sleep(delay)
	confined()
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.added, id)
	f.removed = append(f.removed, id)
	return nil
}

// unconfinedTasks returns the sandboxes that had tasks while enforcement
// was being removed.
func (f *fakeBackend) unconfinedTasks() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.unconfined...)
}

func (f *fakeBackend) Events() <-chan events.Event { return f.ch }

func (f *fakeBackend) Stats() (enforce.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.stats
	st.Violations = append([]enforce.Counter(nil), f.stats.Violations...)
	return st, nil
}

func (f *fakeBackend) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.ch)
	}
	return nil
}

// deny is what a backend does on a denial: count it exactly, and report
// it unless the ring buffer is full.
func (f *fakeBackend) deny(e events.Event, ringFull bool) {
	f.mu.Lock()
	found := false
	for i := range f.stats.Violations {
		c := &f.stats.Violations[i]
		if c.Kind == e.Kind && c.Op == e.Op && c.Audit == e.Audit {
			c.Value++
			found = true
		}
	}
	if !found {
		f.stats.Violations = append(f.stats.Violations, enforce.Counter{Kind: e.Kind, Op: e.Op, Audit: e.Audit, Value: 1})
	}
	if ringFull {
		f.stats.EventsDropped++
	}
	f.mu.Unlock()
	if !ringFull {
		f.ch <- e
	}
}

func (f *fakeBackend) sandbox(id uint32) (enforce.Sandbox, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.added[id]
	return sb, ok
}
