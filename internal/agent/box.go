//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/inotify"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// box is one sandbox the agent created.
type box struct {
	sb       *sandbox.Sandbox
	info     api.SandboxInfo // Placed is guarded by Agent.mu
	compiled *policy.Compiled
	rules    map[string]int
	events   atomic.Uint64
	wd       int // inotify watch on cgroup.events, -1 when none
	// helpers are the pids the agent placed in b (under Agent.mu): each
	// became a command that made b's Landlock domain (landlockaudit.go).
	helpers []int
	// landlock is the command's Landlock domain, for the refusals of
	// failed system calls (refused.go); nil when unknown.
	landlock *boxLandlock
	// own is Claude Code's own state, whose refusals are not reported
	// (claudeown.go).
	own *claudestate.Own

	// ide are the IDE lock ports its listeners are kept off
	// (idelocks.go); nil: none asked for, or not known (adopted).
	ide *boxIDE

	cj *claudeJournal // nil: ~/.claude.json not guarded (claudejson.go)
	// after are the checks made once the sandbox ended (afterrun.go);
	// notes what they did, for Ended, valid after gone.
	after *afterRunJournal
	notes []string

	once   sync.Once
	gone   chan struct{} // closed once removed
	reason string        // why, valid after gone
}

// visible reports whether peer may see and end b.
func (b *box) visible(p api.Peer) bool { return p.Root() || b.info.Owner == p.UID }

// register makes b known to the event pump and the emptiness watch.
func (a *Agent) register(b *box) error {
	wd, err := a.empty.add(filepath.Join(b.sb.Path(), "cgroup.events"), b)
	if err != nil {
		return err
	}
	b.wd = wd
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		a.empty.remove(wd)
		return errors.New("the agent is shutting down")
	}
	a.boxes[b.info.Name] = b
	a.byCgroup[b.sb.Info.CgroupID] = b
	return nil
}

// end removes b: kills what runs in it, stops enforcing, removes the cgroup.
// The processes die before enforcement stops, so none runs unconfined. Only
// the first call does anything; the others wait for it.
func (a *Agent) end(b *box, reason string) error {
	var err error
	first := false
	b.once.Do(func() {
		first = true
		a.empty.remove(b.wd)
		a.ide.remove(b)
		auditOn := a.landlockAuditOn()
		err = b.sb.Close()
		// The box stays known to the pump until the sandbox's last events
		// have been through it, so that they reach its session.
		a.settle()
		a.settleLandlock(auditOn())
		// Nothing runs in it any more: what it changed in ~/.claude.json
		// is put back, and the event reaches its session too.
		a.undoClaudeJSON(b)
		// And what no rule could protect during the run: the git
		// directories it made, the marketplace clones it changed.
		a.afterRun(b)
		a.mu.Lock()
		delete(a.boxes, b.info.Name)
		delete(a.byCgroup, b.sb.Info.CgroupID)
		a.mu.Unlock()
		b.reason = reason
		a.dropRecord(b)
		close(b.gone)
	})
	if !first {
		<-b.gone
		return nil
	}
	if err != nil {
		a.log.Error("remove sandbox", zap.String("sandbox", b.info.Name), zap.Error(err))
		return fmt.Errorf("remove sandbox %s: %w", b.info.Name, err)
	}
	a.log.Info("sandbox removed", zap.String("sandbox", b.info.Name), zap.String("reason", reason),
		zap.Uint64("events", b.events.Load()))
	return nil
}

// How long settle waits for a removed sandbox's trailing events: at most
// settleMax without the pump taking any (a stalled pump), and settleLimit
// in all while it keeps taking them (a flood's backlog).
var (
	settleGrace = 30 * time.Millisecond
	settleMax   = 500 * time.Millisecond
	settleLimit = 10 * time.Second
)

// settle waits until the events a backend has produced so far are through
// the pump. A backend reports a denial just after answering it (fanotify)
// or through a ring buffer read by another goroutine (BPF LSM), so a
// sandbox's last events can trail its last process's exit; without this
// its session would end before them and `aigate run` would not show the
// denial that made the command fail. A backend that can flush says how
// many events the pump must have taken; for one that cannot, settle
// guesses: a grace period, then until the pump goes quiet.
func (a *Agent) settle() {
	evs := a.be.Events()
	if evs == nil {
		return
	}
	if f, ok := a.be.(enforce.Flusher); ok {
		// Bounded by progress, not by a fixed time: under a flood the
		// pump may be seconds behind, and events it takes after the box
		// is gone are attributed to no one, reach no session and are
		// counted in no session's drops.
		ctx, cancel := context.WithTimeout(context.Background(), settleLimit)
		defer cancel()
		n, err := f.Flush(ctx)
		if err == nil {
			err = a.awaitPump(ctx, n)
		}
		if err != nil {
			a.log.Warn("a removed sandbox's last events may not reach its session", zap.Error(err))
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleMax)
	defer cancel()
	time.Sleep(settleGrace)
	last := a.pumped.Load()
	for ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		n := a.pumped.Load()
		if len(evs) == 0 && n == last {
			return
		}
		last = n
	}
}

// awaitPump waits until the pump has taken n events, as long as it keeps
// taking some: one that took none for settleMax is given up on.
func (a *Agent) awaitPump(ctx context.Context, n uint64) error {
	last := a.pumped.Load()
	for {
		wait, cancel := context.WithTimeout(ctx, settleMax)
		err := enforce.AwaitCount(wait, a.pumped.Load, n)
		cancel()
		now := a.pumped.Load()
		if err == nil || ctx.Err() != nil || now == last {
			return err
		}
		last = now
	}
}

// onEmpty is called when a sandbox's cgroup.events changed: once its
// command was placed, an unpopulated sandbox has nothing left to confine.
func (a *Agent) onEmpty(b *box) {
	a.mu.Lock()
	placed := b.info.Placed
	a.mu.Unlock()
	if !placed {
		return
	}
	if pop, err := b.sb.Populated(); err != nil || pop {
		return
	}
	go a.end(b, "empty")
}

// emptyWatch reports changes of cgroup.events files through inotify: the
// kernel signals every change of "populated" as a modification, so a
// sandbox is removed the moment its last process exits, with no polling.
type emptyWatch struct {
	in  *inotify.Watcher
	fn  func(*box)
	mu  sync.Mutex
	wds map[int]*box
}

func newEmptyWatch(fn func(*box)) (*emptyWatch, error) {
	w := &emptyWatch{fn: fn, wds: make(map[int]*box)}
	in, err := inotify.NewWatcher(w.event)
	if err != nil {
		return nil, err
	}
	w.in = in
	return w, nil
}

func (w *emptyWatch) add(file string, b *box) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, err := w.in.Add(file, unix.IN_MODIFY)
	if err != nil {
		return -1, err
	}
	w.wds[wd] = b
	return wd, nil
}

func (w *emptyWatch) remove(wd int) {
	if wd < 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.wds[wd]; ok {
		delete(w.wds, wd)
		w.in.Remove(wd) // the cgroup may be gone already
	}
}

func (w *emptyWatch) event(ev inotify.Event) {
	w.mu.Lock()
	b := w.wds[int(ev.Wd)]
	w.mu.Unlock()
	if b != nil {
		w.fn(b)
	}
}

func (w *emptyWatch) close() { w.in.Close() }
