package backend

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/egress"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
)

// netPart is what Composite needs of *egress.Egress; tests substitute it.
type netPart interface {
	Add(ctx context.Context, sb *enforce.Sandbox) error
	Remove(id uint32) error
	Events() <-chan events.Event
	Stats() (enforce.Stats, error)
	Close() error
	Status(id uint32) (egress.Status, bool)
	DomainOf(cgroupID uint64, addr netip.Addr) string
	GuardIDEPort(id uint32, port uint16) error
}

// Composite is what Open returns on Linux: a file and exec backend (BPF
// LSM or fanotify) and the egress component, as one enforce.Backend with
// one event stream and one set of counters.
//
// It does not implement enforce.Pinner itself: with the fanotify part the
// enforcement is a process and ends with the agent (its guard kills the
// sandboxes). Pinned wraps it when both parts pin (BPF LSM with a
// PinPath).
type Composite struct {
	files enforce.Backend
	net   netPart

	out       chan events.Event
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var (
	_ enforce.Backend         = (*Composite)(nil)
	_ enforce.UnixSockets     = (*Composite)(nil)
	_ enforce.UserNamespaces  = (*Composite)(nil)
	_ enforce.DomainNamer     = (*Composite)(nil)
	_ enforce.RefusalReporter = (*Composite)(nil)
	_ enforce.IDEPorts        = (*Composite)(nil)
)

func compose(files enforce.Backend, net netPart) *Composite {
	c := &Composite{files: files, net: net, out: make(chan events.Event, 256), done: make(chan struct{})}
	for _, in := range []<-chan events.Event{files.Events(), net.Events()} {
		if in == nil {
			continue
		}
		c.wg.Add(1)
		go c.forward(in)
	}
	return c
}

// forward passes events on until in closes; after Close began, it drains
// without passing, so that no part blocks on a reader that has gone.
func (c *Composite) forward(in <-chan events.Event) {
	defer c.wg.Done()
	for ev := range in {
		select {
		case c.out <- ev:
		case <-c.done:
		}
	}
}

// Name is the file and exec backend's: "lsm" or "fanotify".
func (c *Composite) Name() string { return c.files.Name() }

// Add enforces the network rules first and the file and exec rules second.
// For BPF LSM, the file side's Add enters the cgroup into the shared
// sandbox table, the switch that makes every program (LSM and sock_addr)
// act on it: the sandbox goes live with its complete policy at once. For
// fanotify too the network side is complete before any file rule. Either
// Add failing leaves nothing of the other: a sandbox is never live
// without its network rules.
func (c *Composite) Add(ctx context.Context, sb *enforce.Sandbox) error {
	if err := c.net.Add(ctx, sb); err != nil {
		return err
	}
	// The first write to cgroup.procs waits for an RCU grace period; it
	// is made now, beside the file side's work, and after the network's
	// cgroup attach, which it would hold up (it holds cgroup_mutex while
	// it waits). With sb.Enter, that write moves the command's waiting
	// helper in (it runs nothing before the sandbox's creation returns);
	// without, the process placed right after Add finds the wait paid by
	// a write that moves nothing (cgroup.PrimeMigration).
	var entered chan error
	if sb.Enter != nil {
		entered = make(chan error, 1)
		go func() { entered <- sb.Enter() }()
	} else {
		go cgroup.PrimeMigration()
	}
	err := c.files.Add(ctx, sb)
	if entered != nil {
		if eerr := <-entered; eerr != nil {
			if err == nil {
				return errors.Join(eerr, c.Remove(sb.ID))
			}
			err = errors.Join(err, eerr)
		}
	}
	if err != nil {
		if rerr := c.net.Remove(sb.ID); rerr != nil {
			return errors.Join(err, fmt.Errorf("undo network rules: %w", rerr))
		}
		return err
	}
	if err := c.holdLinks(sb); err != nil {
		return errors.Join(err, c.Remove(sb.ID))
	}
	return nil
}

// holdLinks hands the network links of sb to a file side that can hold
// them. The links are otherwise held by this process alone: when it is
// killed, the kernel detaches the programs at once, while the guard kills
// the sandbox only once it sees aigate gone, and in between the sandbox's
// connections would go out unchecked (hundreds did, in
// TestEscapeAgentKilled). Done before Add returns: before the command
// runs (the helper that Enter moves in waits until then).
func (c *Composite) holdLinks(sb *enforce.Sandbox) error {
	h, ok := c.files.(enforce.LinkHolder)
	if !ok {
		return nil
	}
	src, ok := c.net.(enforce.LinkSource)
	if !ok {
		return nil
	}
	if err := h.HoldLinks(sb.CgroupPath, src.LinkFDs(sb.ID)); err != nil {
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	return nil
}

// Remove undoes Add in reverse: the file side first (for BPF LSM it takes
// the cgroup out of the shared table, turning every program off for it at
// once), then the network rules.
func (c *Composite) Remove(id uint32) error {
	return errors.Join(c.files.Remove(id), c.net.Remove(id))
}

// Events delivers the denials of both parts until Close.
func (c *Composite) Events() <-chan events.Event { return c.out }

// Unenforced is the file part's (enforce.Limited).
func (c *Composite) Unenforced(sb *enforce.Sandbox) []string {
	if l, ok := c.files.(enforce.Limited); ok {
		return l.Unenforced(sb)
	}
	return nil
}

// UnixSockets implements enforce.UnixSockets: the file part's when it
// confines unix sockets itself (the LSM, whose network object then skips
// them), otherwise the network object's cgroup connect_unix programs.
func (c *Composite) UnixSockets() string {
	if u, ok := c.files.(enforce.UnixSockets); ok {
		return u.UnixSockets()
	}
	return loader.UnixSocketEnforcement()
}

// SandboxBound implements enforce.UnixOwner: the network part's, which
// records the names bound where it confines unix sockets (not under the
// LSM, whose events name a socket the kernel found at the connect).
func (c *Composite) SandboxBound(cgroupID uint64, pid uint32, name string, dev, ino uint64) (bool, error) {
	if o, ok := c.net.(enforce.UnixOwner); ok {
		return o.SandboxBound(cgroupID, pid, name, dev, ino)
	}
	return false, nil
}

// RefusalsReported implements enforce.RefusalReporter: the network part's
// sys_exit program reports the calls Landlock may have refused, for
// either file backend.
func (c *Composite) RefusalsReported() error {
	if r, ok := c.net.(enforce.RefusalReporter); ok {
		return r.RefusalsReported()
	}
	return errors.New("the network part reports no refused calls")
}

// GuardIDEPort implements enforce.IDEPorts: the network part's ingress
// program, on both file backends.
func (c *Composite) GuardIDEPort(id uint32, port uint16) error {
	return c.net.GuardIDEPort(id, port)
}

// RefusesUserNamespaces implements enforce.UserNamespaces: the file
// part's (the LSM's userns_create program); the network part has none.
func (c *Composite) RefusesUserNamespaces() bool {
	u, ok := c.files.(enforce.UserNamespaces)
	return ok && u.RefusesUserNamespaces()
}

// Flush implements enforce.Flusher: forward passes every event of both
// parts on until Close, so Events' count is the sum of theirs. A part that
// cannot flush makes the Composite unable to (an error).
func (c *Composite) Flush(ctx context.Context) (uint64, error) {
	var sum uint64
	for _, p := range []any{c.files, c.net} {
		f, ok := p.(enforce.Flusher)
		if !ok {
			return 0, fmt.Errorf("flush events: %T cannot flush", p)
		}
		n, err := f.Flush(ctx)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// Stats adds up both parts' counters. For BPF LSM, the kernel's network
// counters are the LSM object's (shared maps) and the egress part adds only
// its DNS refusals; for fanotify it adds its own Net's counters too.
func (c *Composite) Stats() (enforce.Stats, error) {
	fs, err := c.files.Stats()
	if err != nil {
		return enforce.Stats{}, err
	}
	ns, err := c.net.Stats()
	if err != nil {
		return enforce.Stats{}, fmt.Errorf("read network counters: %w", err)
	}
	return egress.MergeStats(fs, ns), nil
}

// DomainOf implements enforce.DomainNamer: the egress part's.
func (c *Composite) DomainOf(cgroupID uint64, addr netip.Addr) string {
	return c.net.DomainOf(cgroupID, addr)
}

// NetStatus says how the egress policy of sandbox id is kept (DNS proxy or
// periodic resolution), for `aigate status`.
func (c *Composite) NetStatus(id uint32) (egress.Status, bool) { return c.net.Status(id) }

// Close closes the file side first: fanotify kills the sandboxes still
// registered before it lets go, and they must not outlive their network
// rules. Then the egress part, then Events.
func (c *Composite) Close() error {
	return c.shut(func() error { return errors.Join(c.files.Close(), c.net.Close()) })
}

// shut closes both parts with closeParts (Close, or Pinned.Release), then
// Events; only the first call does anything.
func (c *Composite) shut(closeParts func() error) error {
	c.closeOnce.Do(func() {
		err := closeParts()
		close(c.done)
		c.wg.Wait()
		close(c.out)
		c.closeErr = err
	})
	return c.closeErr
}
