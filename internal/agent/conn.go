//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
)

// serveConn answers one connection. Whatever the client sends, the worst
// outcome is an error response and a closed connection.
func (a *Agent) serveConn(nc *net.UnixConn, peer api.Peer) {
	c := api.NewConn(nc)
	log := a.log.With(zap.Uint32("uid", peer.UID), zap.Int("pid", peer.PID))
	var req api.Request
	if err := c.Read(&req, time.Now().Add(requestTimeout)); err != nil {
		if e := readError(err); e != nil {
			log.Debug("bad request", zap.Error(err))
			a.reply(c, &api.Response{Error: e})
		}
		return
	}
	if e := req.Validate(); e != nil {
		a.reply(c, &api.Response{Error: e})
		return
	}
	// Reading one's own trust and policy records is as harmless as
	// status; who may change them is trustRequest's and policyRequest's
	// to check.
	if req.Op != api.OpStatus && req.Op != api.OpTrust && req.Op != api.OpPolicy {
		// A sandboxed tool, running as its user, may well reach the socket:
		// it must not create a looser sandbox for itself, end its own
		// (to run on elsewhere), or read other sandboxes' events.
		if e := a.refuseInside(peer, "requests from inside a sandbox are refused"); e != nil {
			a.reply(c, &api.Response{Error: e})
			return
		}
	}
	log.Debug("request", zap.String("op", string(req.Op)))
	switch req.Op {
	case api.OpStatus:
		a.reply(c, &api.Response{OK: true, Status: a.status(peer)})
	case api.OpList:
		a.reply(c, &api.Response{OK: true, Sandboxes: a.list(peer)})
	case api.OpEnd:
		a.reply(c, a.endRequest(peer, req.End.Sandbox))
	case api.OpWatch:
		a.watch(c, peer, &req)
	case api.OpCreate:
		a.session(c, peer, &req, log)
	case api.OpTrust:
		a.reply(c, a.trustRequest(peer, req.Trust))
	case api.OpPolicy:
		a.reply(c, a.policyRequest(peer, req.Policy))
	case api.OpPlace:
		a.reply(c, errResp(api.CodeBadRequest, "place is only valid on the connection that created the sandbox"))
	}
}

// readError turns a failed read into the error to send, or nil when the
// client is gone and there is no one to tell.
func readError(err error) *api.Error {
	var de *api.DecodeError
	var ne net.Error
	switch {
	case errors.Is(err, api.ErrTooLarge):
		return &api.Error{Code: api.CodeTooLarge, Message: err.Error()}
	case errors.As(err, &de):
		return &api.Error{Code: api.CodeBadRequest, Message: err.Error()}
	case errors.As(err, &ne) && ne.Timeout():
		return &api.Error{Code: api.CodeTimeout, Message: "no complete request arrived in time"}
	case errors.Is(err, io.EOF):
		return nil
	}
	// Truncated: the client closed mid-message; the write will fail, but
	// a half-closed client may still read.
	return &api.Error{Code: api.CodeBadRequest, Message: err.Error()}
}

func (a *Agent) reply(c *api.Conn, r *api.Response) {
	_ = c.Write(r, responseTimeout)
}

func errResp(code, msg string) *api.Response {
	return &api.Response{Error: &api.Error{Code: code, Message: msg}}
}

func (a *Agent) status(p api.Peer) *api.Status {
	_, pinned := a.be.(enforce.Pinner)
	return &api.Status{
		Version:   api.Version,
		Build:     a.cfg.Build,
		PID:       os.Getpid(),
		Started:   a.started,
		Backend:   a.be.Name(),
		Pinned:    pinned,
		Sandboxes: len(a.list(p)),
		Metrics:   a.cfg.MetricsAddr,
		Unix:      a.unixSockets(),
		Landlock:  a.LandlockEvents(),
	}
}

func (a *Agent) list(p api.Peer) []api.SandboxInfo {
	a.mu.Lock()
	var out []api.SandboxInfo
	var boxes []*box
	for _, b := range a.boxes {
		if b.visible(p) {
			out = append(out, b.info)
			boxes = append(boxes, b)
		}
	}
	a.mu.Unlock()
	ns, _ := a.be.(netStatuser)
	for i, b := range boxes {
		if pids, err := b.sb.PIDs(); err == nil {
			out[i].Procs = len(pids)
		}
		out[i].Events = b.events.Load()
		if ns == nil {
			continue
		}
		if st, ok := ns.NetStatus(b.info.ID); ok {
			out[i].DNS, out[i].DNSReason = string(st.Mode), st.Reason
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// lookup finds a sandbox peer may see. Another user's sandbox is "not
// found", not "forbidden": its existence is not theirs to know.
func (a *Agent) lookup(p api.Peer, name string) *box {
	a.mu.Lock()
	defer a.mu.Unlock()
	if b := a.boxes[name]; b != nil && b.visible(p) {
		return b
	}
	return nil
}

func (a *Agent) endRequest(p api.Peer, name string) *api.Response {
	b := a.lookup(p, name)
	if b == nil {
		return errResp(api.CodeNotFound, fmt.Sprintf("no sandbox %s of yours (aigate status lists them)", name))
	}
	if err := a.end(b, "ended"); err != nil {
		return errResp(api.CodeInternal, err.Error())
	}
	return &api.Response{OK: true}
}

// watch streams events until the client goes away or the agent stops.
func (a *Agent) watch(c *api.Conn, p api.Peer, req *api.Request) {
	s := &sub{uid: p.UID, root: p.Root(), fold: api.Folds(req.V), binary: api.BinaryEvents(req.V), movedTo: api.MovesAside(req.V)}
	if w := req.Watch; w != nil {
		if w.Sandbox != "" && a.lookup(p, w.Sandbox) == nil {
			a.reply(c, errResp(api.CodeNotFound, fmt.Sprintf("no sandbox %s of yours (aigate status lists them)", w.Sandbox)))
			return
		}
		s.sandbox, s.kind = w.Sandbox, w.Kind
	}
	a.fan.add(s)
	defer a.fan.remove(s)
	if err := c.Write(&api.Response{OK: true}, responseTimeout); err != nil {
		return
	}
	gone := clientGone(c, nil)
	a.stream(c, s, gone, nil)
}

// clientGone reads from c until it fails (the client closed or the agent
// closed the connection); a well-behaved watcher sends nothing. On a
// session, requests (end) are passed to onReq.
func clientGone(c *api.Conn, onReq func(*api.Request)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var r api.Request
			if err := c.Read(&r, time.Time{}); err != nil {
				return
			}
			if onReq == nil {
				return
			}
			onReq(&r)
		}
	}()
	return done
}

// streamBatch is how many queued events a stream sends in one write: a
// syscall per event cost the agent more than naming and fanning out the
// event (BenchmarkAgentKernelEventRate).
const streamBatch = 64

// stream writes s's events to c until gone or stop closes. Writes have no
// deadline: a reader that is merely stopped (Ctrl-Z) must not lose its
// session; one that does not keep up loses events, counted and reported at
// most once a second.
//
// No timer runs while nothing is dropped: an idle session costs no
// wake-ups (the agent may hold a thousand). Events are dropped only while
// the queue is full, so while s.ready has a token: the loop sees every
// drop after taking an event, and arms the report then.
func (a *Agent) stream(c *api.Conn, s *sub, gone, stop <-chan struct{}) {
	var reported uint64
	var last time.Time       // of the last report
	var due <-chan time.Time // armed while drops wait to be reported
	var batch []any
	var evs []events.Event // the batch, for a binary reader
	notify := func() error {
		if d := s.dropped.Load(); d > reported {
			n := d - reported
			reported, last = d, time.Now()
			return c.Write(&api.Response{OK: true, Dropped: n}, 0)
		}
		return nil
	}
	for {
		select {
		case <-s.ready:
			// At most streamBatch events per turn, in one write, so that
			// a report that is due goes out while the queue stays full.
			batch, evs = batch[:0], evs[:0]
			for len(evs) < streamBatch {
				e, ok := s.pop()
				if !ok {
					break
				}
				evs = append(evs, s.forReader(e))
			}
			var err error
			switch {
			case len(evs) == 0:
			case s.binary:
				err = c.WriteEvents(evs, 0)
			default:
				for i := range evs {
					batch = append(batch, &api.Response{OK: true, Event: &evs[i]})
				}
				err = c.WriteMany(batch, 0)
			}
			if err != nil {
				return
			}
			clear(batch) // the events' strings are garbage once sent
			clear(evs)
			if due == nil && s.dropped.Load() > reported {
				due = time.After(time.Until(last.Add(time.Second)))
			}
		case <-due:
			due = nil
			if notify() != nil {
				return
			}
		case <-gone:
			return
		case <-stop:
			// Deliver what is queued, then stop.
			for {
				e, ok := s.pop()
				if !ok {
					_ = notify()
					return
				}
				e = s.forReader(e)
				if c.Write(&api.Response{OK: true, Event: &e}, 0) != nil {
					return
				}
			}
		}
	}
}

// session serves a create request and then the sandbox's life: the place
// request (unless the create carried it: api.CreateRequest.Place), the
// event stream, and the end.
func (a *Agent) session(c *api.Conn, p api.Peer, r *api.Request, log *zap.Logger) {
	started := time.Now()
	b, warnings, e := a.create(context.Background(), p, r.Create)
	if e != nil {
		a.reply(c, &api.Response{Error: e})
		return
	}
	log = log.With(zap.String("sandbox", b.info.Name))
	log.Info("sandbox created", zap.Uint32("owner", b.info.Owner), zap.Strings("command", b.info.Command),
		zap.Duration("took", time.Since(started))) // start-up is measured: docs/performance.md
	created := &api.Response{OK: true, Warnings: warnings}
	var pid int
	if r.Create.Place != nil {
		// Placed by create: its answer is the go-ahead's condition.
		pid = r.Create.Place.PID
	} else {
		info := b.info
		created.Sandbox = &info
		if err := c.Write(created, responseTimeout); err != nil {
			_ = a.end(b, "client_gone")
			return
		}
		// Until the command is placed, the client has placeTimeout to ask.
		var preq api.Request
		if err := c.Read(&preq, time.Now().Add(placeTimeout)); err != nil {
			_ = a.end(b, "client_gone")
			if e := readError(err); e != nil {
				a.reply(c, &api.Response{Error: e})
			}
			return
		}
		if e := preq.Validate(); e != nil || preq.Op != api.OpPlace {
			if e == nil {
				e = &api.Error{Code: api.CodeBadRequest, Message: fmt.Sprintf("expected place, got %s", preq.Op)}
			}
			_ = a.end(b, "client_gone")
			a.reply(c, &api.Response{Error: e})
			return
		}
		pid = preq.Place.PID
	}
	// Subscribe before the command can run, so that none of its events is
	// missed.
	s := &sub{uid: b.info.Owner, root: true, sandbox: b.info.Name, fold: api.Folds(r.V), binary: api.BinaryEvents(r.V), movedTo: api.MovesAside(r.V)}
	a.fan.add(s)
	defer a.fan.remove(s)
	// The backend's drops from the placing on, told at the end: they may
	// be this sandbox's.
	dropped0, dropsKnown := a.kernelDropped()
	if r.Create.Place != nil {
		log.Debug("placed", zap.Int("child", pid), zap.Bool("at_create", true))
		a.mu.Lock()
		info := b.info
		a.mu.Unlock()
		created.Sandbox = &info
		if err := c.Write(created, responseTimeout); err != nil {
			_ = a.end(b, "client_gone")
			return
		}
	} else {
		placing := time.Now()
		if e := a.place(p, b, pid); e != nil {
			_ = a.end(b, "client_gone")
			a.reply(c, &api.Response{Error: e})
			return
		}
		log.Debug("placed", zap.Int("child", pid), zap.Duration("took", time.Since(placing)))
		if err := c.Write(&api.Response{OK: true}, responseTimeout); err != nil {
			_ = a.end(b, "client_gone")
			return
		}
	}

	endReq := make(chan struct{}, 1)
	gone := clientGone(c, func(r *api.Request) {
		if r.Op == api.OpEnd {
			select {
			case endReq <- struct{}{}:
			default:
			}
		}
	})
	go func() {
		select {
		case <-gone:
			// The client died or hung up: as with `aigate run`, what it
			// started goes with it.
			_ = a.end(b, "client_gone")
		case <-endReq:
			_ = a.end(b, "ended")
		case <-b.gone:
		}
	}()
	a.stream(c, s, gone, b.gone)
	<-b.gone
	ended := &api.Ended{Reason: b.reason, Events: b.events.Load()}
	if d, ok := a.kernelDropped(); ok && dropsKnown && api.Folds(r.V) { // a version 1 client refuses the field
		ended.KernelDropped = d - dropped0
	}
	if api.Folds(r.V) {
		ended.Notes = b.notes
	}
	_ = c.Write(&api.Response{OK: true, Ended: ended}, responseTimeout)
}

// kernelDropped is the backend's count of events it dropped.
func (a *Agent) kernelDropped() (uint64, bool) {
	st, err := a.be.Stats()
	return st.EventsDropped, err == nil
}
