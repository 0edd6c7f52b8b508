package llaudit

import (
	"fmt"
	"strings"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
)

// Backend is the Backend field of the events this package makes: the
// refusal was Landlock's, whatever backend enforces the sandbox.
const Backend = events.BackendLandlock

// hold is how long the records of an event wait for its end (EOE) before
// they are handed on as they are: a task that has no audit context (it
// existed before audit was first enabled) gets no SYSCALL or EOE record.
const hold = 200 * time.Millisecond

// maxPending and maxDomains bound what a flood of records can make the
// agent hold: past them, the oldest pending event is handed on, and no
// further domain is remembered (its refusals go unreported).
const (
	maxPending = 4096
	maxDomains = 1 << 16
)

// Owner is the sandbox a domain belongs to.
type Owner struct {
	Sandbox  string
	CgroupID uint64
}

// Resolver tells which sandbox the process pid runs in, as the agent sees
// it now, and whether uid owns that sandbox; ok false for a process outside
// every sandbox (or gone).
type Resolver func(pid int, uid uint32) (Owner, bool)

// Collector groups the records of each audit event, learns which domains
// are the sandboxes' and turns their refusals into events. It is not safe
// for concurrent use.
type Collector struct {
	resolve Resolver
	pending map[uint64]*group
	order   []uint64 // serials of pending, oldest first
	domains map[uint64]Owner
	// Ignored counts refusals by a domain that is no sandbox's (or that
	// was first seen before the agent read audit records).
	Ignored uint64
}

type group struct {
	at      time.Time
	access  []Record
	domains []Record
	task    *Record
}

// NewCollector returns a collector attributing domains with resolve.
func NewCollector(resolve Resolver) *Collector {
	return &Collector{resolve: resolve, pending: make(map[uint64]*group), domains: make(map[uint64]Owner)}
}

// Add takes one record read at now and returns the events that are
// complete.
func (c *Collector) Add(r Record, now time.Time) []events.Event {
	if r.Type == TypeLandlockDomain && r.Status == "deallocated" {
		// The domain is gone: its id is never used again.
		delete(c.domains, r.Domain)
		return c.Expire(now)
	}
	g := c.pending[r.Serial]
	switch r.Type {
	case TypeLandlockAccess, TypeLandlockDomain:
		if g == nil {
			g = &group{at: now}
			c.pending[r.Serial] = g
			c.order = append(c.order, r.Serial)
		}
		if r.Type == TypeLandlockAccess {
			g.access = append(g.access, r)
		} else {
			g.domains = append(g.domains, r)
		}
	case TypeSyscall:
		// Only the task of an event that holds a Landlock record matters;
		// the SYSCALL record comes after those, at the end of the call.
		if g != nil {
			task := r
			g.task = &task
		}
	case TypeEOE:
		if g != nil {
			delete(c.pending, r.Serial)
			return append(c.Expire(now), c.finish(g)...)
		}
	}
	var out []events.Event
	for len(c.order) > maxPending {
		out = append(out, c.pop()...)
	}
	return append(out, c.Expire(now)...)
}

// Pending is how many events wait for their end.
func (c *Collector) Pending() int { return len(c.pending) }

// Expire hands on the events that waited longer than hold for their end.
func (c *Collector) Expire(now time.Time) []events.Event {
	var out []events.Event
	for len(c.order) > 0 {
		g := c.pending[c.order[0]]
		if g != nil && now.Sub(g.at) < hold {
			break
		}
		out = append(out, c.pop()...)
	}
	return out
}

func (c *Collector) pop() []events.Event {
	s := c.order[0]
	c.order = c.order[1:]
	g := c.pending[s]
	if g == nil { // finished by its EOE already
		return nil
	}
	delete(c.pending, s)
	return c.finish(g)
}

// finish attributes a complete event: a domain whose creation record
// names a process inside a sandbox (owned by the record's uid) is that
// sandbox's from then on; a refusal by any other domain is ignored.
func (c *Collector) finish(g *group) []events.Event {
	for _, d := range g.domains {
		if d.Status != "allocated" || len(c.domains) >= maxDomains {
			continue
		}
		if o, ok := c.resolve(d.PID, d.UID); ok {
			c.domains[d.Domain] = o
		}
	}
	var out []events.Event
	for _, a := range g.access {
		o, ok := c.domains[a.Domain]
		if !ok {
			c.Ignored++
			continue
		}
		out = append(out, toEvent(a, g.task, o, g.at))
	}
	return out
}

// toEvent makes the deny event of refusal a by a domain of o; task is the
// SYSCALL record of the refused task, nil when it had none.
func toEvent(a Record, task *Record, o Owner, at time.Time) events.Event {
	e := events.Event{Time: at, Sandbox: o.Sandbox, CgroupID: o.CgroupID, Backend: Backend}
	e.Kind, e.Op = kindOp(a.Blockers)
	switch {
	case e.Kind == events.KindProc && a.OPid != 0:
		e.Path = fmt.Sprintf("pid %d (%s)", a.OPid, a.OComm)
	default:
		e.Path = a.Path
	}
	if task != nil {
		e.TGID = uint32(task.PID)
		e.UID = task.UID
		e.Comm = task.Comm
	}
	return e
}

// kindOp maps Landlock's blockers to aigate's kind and operation. The
// domain aigate makes handles write rights and scopes only; a read or
// execute refusal comes from a domain the tool made inside the sandbox.
func kindOp(blockers []string) (events.Kind, events.Op) {
	for _, b := range blockers {
		switch {
		case b == "ptrace":
			return events.KindProc, events.OpPtrace
		case b == "scope.signal":
			return events.KindProc, events.OpSignal
		case b == "scope.abstract_unix_socket":
			return events.KindNet, events.OpUnix
		case strings.HasPrefix(b, "net."):
			return events.KindNet, events.OpConnect
		case b == "fs.execute":
			return events.KindExec, events.OpExec
		case b == "fs.read_file" || b == "fs.read_dir":
			return events.KindFile, events.OpRead
		}
	}
	return events.KindFile, events.OpWrite
}
