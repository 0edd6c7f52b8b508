//go:build linux

package agent

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/inotify"
)

// boxIDE are the IDE lock files whose ports a sandbox's listeners are kept
// off (docs/threat-model.md, "A stale IDE lock"), by port, for the events.
type boxIDE struct {
	mu    sync.Mutex
	locks map[uint16]string
}

// lock is the lock file that made port guarded, or a name built from the
// port where the agent does not know it (a sandbox adopted from an agent
// before this one).
func (i *boxIDE) lock(port uint16) string {
	if i != nil {
		i.mu.Lock()
		defer i.mu.Unlock()
		if l, ok := i.locks[port]; ok {
			return l
		}
	}
	return filepath.Join(claudestate.IDELockDir, strconv.Itoa(int(port))+".lock")
}

// nameIDE names the lock file as the rule of a net event that the
// ingress program reported for a guarded port (enforce.IDELockRule).
func nameIDE(e *events.Event, b *box) {
	if e.Kind != events.KindNet || e.Rule&enforce.IDELockRule == 0 {
		return
	}
	e.RuleText = b.ide.lock(uint16(e.Rule))
}

// guardIDE keeps b's listeners off the ports of the IDE locks req names
// and of those written later in its directories: the ports are entered
// before the sandbox's command starts (an error fails the create), and
// the directories are watched, then listed again (a lock written between
// run's reading and the watch). A backend that cannot guard ports gives a
// warning: the hole stays open, said at every run.
func (a *Agent) guardIDE(b *box, req *api.CreateRequest) (string, error) {
	if req.IDELocks == nil {
		return "", nil
	}
	g, ok := a.be.(enforce.IDEPorts)
	if !ok {
		return fmt.Sprintf("the %s backend cannot keep the sandbox off the ports IDE lock files name: a claude outside with --ide may connect to a server of the sandbox (docs/threat-model.md, \"A stale IDE lock\")", a.be.Name()), nil
	}
	b.ide = &boxIDE{locks: map[uint16]string{}}
	for _, l := range req.IDELocks.Locks {
		if err := a.guardIDEPort(g, b, l.Port, l.Path); err != nil {
			return "", err
		}
	}
	for _, d := range req.IDELocks.Dirs {
		if err := a.ide.add(d, b); err != nil {
			// Claude Code makes the directory before it writes a lock,
			// and run made it as the user: one it cannot watch (not a
			// directory, gone) is logged, not fatal.
			a.log.Warn("IDE locks: directory not watched", zap.String("sandbox", b.info.Name), zap.Error(err))
			continue
		}
		locks, err := claudestate.IDELocks(d)
		if err != nil {
			a.log.Warn("IDE locks: directory not listed", zap.String("sandbox", b.info.Name), zap.Error(err))
		}
		for _, l := range locks {
			if err := a.guardIDEPort(g, b, l.Port, l.Path); err != nil {
				return "", err
			}
		}
	}
	return "", nil
}

func (a *Agent) guardIDEPort(g enforce.IDEPorts, b *box, port uint16, lock string) error {
	b.ide.mu.Lock()
	_, done := b.ide.locks[port]
	if !done {
		b.ide.locks[port] = lock
	}
	b.ide.mu.Unlock()
	if done {
		return nil
	}
	if err := g.GuardIDEPort(b.info.ID, port); err != nil {
		return fmt.Errorf("keep sandbox %s off port %d of IDE lock %s: %w", b.info.Name, port, lock, err)
	}
	return nil
}

// onIDELock guards the port of a lock file written in a watched
// directory for every sandbox watching it. A port that cannot be guarded
// ends the sandbox: fail closed.
func (a *Agent) onIDELock(b *box, dir, name string) {
	port, ok := claudestate.IDELockPort(name)
	if !ok {
		return
	}
	g, ok := a.be.(enforce.IDEPorts)
	if !ok || b.ide == nil {
		return
	}
	select {
	case <-b.gone:
		return
	default:
	}
	lock := filepath.Join(dir, name)
	if err := a.guardIDEPort(g, b, port, lock); err != nil {
		select {
		case <-b.gone:
			return
		default:
		}
		a.log.Error("IDE lock written during the run", zap.String("sandbox", b.info.Name), zap.Error(err))
		go a.end(b, "IDE lock port not guarded")
		return
	}
	a.log.Info("IDE lock written during the run: port guarded", zap.String("sandbox", b.info.Name), zap.String("lock", lock))
}

// ideWatch reports names created in or moved into the ide/ directories of
// running sandboxes. One instance serves them all (inotify instances are
// limited per user, root's too); one directory watched for several
// sandboxes has one watch descriptor.
type ideWatch struct {
	in  *inotify.Watcher
	fn  func(b *box, dir, name string)
	mu  sync.Mutex
	wds map[int]map[*box]string // the directory as each sandbox named it
}

func newIDEWatch(fn func(b *box, dir, name string)) (*ideWatch, error) {
	w := &ideWatch{fn: fn, wds: map[int]map[*box]string{}}
	in, err := inotify.NewWatcher(w.event)
	if err != nil {
		return nil, err
	}
	w.in = in
	return w, nil
}

// add watches dir for b until remove(b). IN_DONT_FOLLOW and IN_ONLYDIR:
// a symlink in its place is not followed (what it points at would only
// add ports to guard, but the watch is of the user's directory).
func (w *ideWatch) add(dir string, b *box) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, err := w.in.Add(dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ONLYDIR|unix.IN_DONT_FOLLOW|unix.IN_MASK_ADD)
	if err != nil {
		return err
	}
	if w.wds[wd] == nil {
		w.wds[wd] = map[*box]string{}
	}
	w.wds[wd][b] = dir
	return nil
}

// remove ends b's watches; a directory no sandbox watches any more is
// no longer watched.
func (w *ideWatch) remove(b *box) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for wd, boxes := range w.wds {
		if _, ok := boxes[b]; !ok {
			continue
		}
		delete(boxes, b)
		if len(boxes) == 0 {
			delete(w.wds, wd)
			w.in.Remove(wd)
		}
	}
}

func (w *ideWatch) event(ev inotify.Event) {
	w.mu.Lock()
	if ev.Mask&unix.IN_IGNORED != 0 {
		delete(w.wds, int(ev.Wd))
		w.mu.Unlock()
		return
	}
	var to []func()
	for b, dir := range w.wds[int(ev.Wd)] {
		to = append(to, func() { w.fn(b, dir, ev.Name) })
	}
	w.mu.Unlock()
	for _, f := range to {
		f()
	}
}

func (w *ideWatch) close() {
	if w == nil {
		return
	}
	w.in.Close()
}
