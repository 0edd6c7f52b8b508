//go:build linux

package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
)

// sessionBuffer is how many events a session holds for a slow reader
// before it counts them as dropped.
const sessionBuffer = 4096

// Session is a sandbox created for this client. The sandbox lives while
// its processes do; closing the session (or the client dying) ends it, and
// the agent kills whatever still runs in it, as `aigate run` does when the
// command exits.
type Session struct {
	// Sandbox describes the sandbox as created.
	Sandbox SandboxInfo
	// Warnings are what the user should know (limits not applied, stale
	// sandboxes removed, project file entries ignored).
	Warnings []string
	// Landlock is the domain Start's command enters once in the sandbox
	// (the zero value: fenced off from outside processes where the
	// kernel has Landlock, home not protected).
	Landlock landlock.Options

	conn    *Conn
	events  chan events.Event
	done    chan struct{}
	dropped atomic.Uint64
	placed  bool
	pid     int // the process placed, 0 before

	mu    sync.Mutex
	ended *Ended
	err   error
}

// CreateSandbox asks the agent for a sandbox. The connection stays open as
// the sandbox's session: start the command with launch.Start, or with the
// Start of the helper that req.Place names, which the agent has then
// placed already (the session is Placed).
func (c *Client) CreateSandbox(ctx context.Context, req CreateRequest) (*Session, error) {
	resp, conn, err := c.roundTrip(ctx, &Request{Op: OpCreate, Create: &req})
	if err != nil {
		return nil, fmt.Errorf("create sandbox: %w", olderAgent(err))
	}
	if resp.Sandbox == nil {
		conn.Close()
		return nil, errors.New("create sandbox: the agent sent no sandbox")
	}
	s := &Session{
		Sandbox:  *resp.Sandbox,
		Warnings: resp.Warnings,
		conn:     conn,
		events:   make(chan events.Event, sessionBuffer),
		done:     make(chan struct{}),
	}
	if req.Place != nil {
		// Answered: the process is in the sandbox and its enforcement
		// complete; the stream follows at once.
		s.placedStream(req.Place.PID)
	}
	return s, nil
}

// olderAgent explains the refusal of an agent of protocol version 2,
// which reads the request (and refuses its unknown field place) before it
// looks at the version.
func olderAgent(err error) error {
	var e *Error
	if errors.As(err, &e) && e.Code == CodeBadRequest && strings.Contains(e.Message, `unknown field "place"`) {
		return &Error{Code: CodeVersion, Message: "the running agent is older than this aigate (protocol version 2, this client speaks 3): restart it (`sudo systemctl restart aigate`, or restart `sudo aigate agent`)"}
	}
	return err
}

// Place asks the agent to move pid into the sandbox and, once it has,
// starts reading the session's stream (launch.Start calls it for the exec
// helper). A session places one process.
func (s *Session) Place(pid int) error {
	if s.placed {
		return errors.New("place: a process was already placed in this sandbox")
	}
	_, err := exchange(s.conn, &Request{V: Version, Op: OpPlace, Place: &PlaceRequest{PID: pid}})
	if err != nil {
		return fmt.Errorf("place process %d in sandbox %s: %w", pid, s.Sandbox.Name, err)
	}
	s.placedStream(pid)
	return nil
}

// placedStream records pid as placed and starts reading the stream.
func (s *Session) placedStream(pid int) {
	s.placed, s.pid = true, pid
	s.conn.BufferReads() // from now on s.read alone reads: a stream of events
	go s.read()
}

// Placed reports whether a process was placed in the sandbox.
func (s *Session) Placed() bool { return s.placed }

// PlacedPID is the process placed in the sandbox, 0 before.
func (s *Session) PlacedPID() int { return s.pid }

func (s *Session) read() {
	defer close(s.done)
	defer close(s.events)
	var batch []events.Event
	for {
		var r Response
		var err error
		batch, err = s.conn.ReadStream(&r, batch[:0])
		for _, e := range batch {
			select {
			case s.events <- e:
			default:
				s.dropped.Add(e.N()) // a folded event loses all its denials
			}
		}
		clear(batch) // the strings are the reader's now
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
				err = errors.New("the agent closed the session (it stopped or was restarted)")
			}
			s.finish(nil, err)
			return
		}
		switch {
		case r.Ended != nil:
			s.finish(r.Ended, nil)
			return
		case r.Error != nil:
			s.finish(nil, r.Error)
			return
		case r.Event != nil:
			select {
			case s.events <- *r.Event:
			default:
				s.dropped.Add(r.Event.N()) // a folded event loses all its denials
			}
		case r.Dropped > 0:
			s.dropped.Add(r.Dropped)
		}
	}
}

func (s *Session) finish(e *Ended, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended == nil && s.err == nil {
		s.ended, s.err = e, err
	}
}

// Events delivers the sandbox's events from the moment the command was
// placed; it is closed when the session ends.
func (s *Session) Events() <-chan events.Event { return s.events }

// Dropped is how many of the sandbox's events were lost on the way.
func (s *Session) Dropped() uint64 { return s.dropped.Load() }

// Done is closed when the session has ended (see Result).
func (s *Session) Done() <-chan struct{} { return s.done }

// Result is how the session ended, valid after Done.
func (s *Session) Result() (*Ended, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended, s.err
}

// End asks the agent to end the sandbox (killing what still runs in it)
// and waits up to timeout for the final message.
func (s *Session) End(timeout time.Duration) (*Ended, error) {
	if !s.placed {
		// Nothing was started: closing the connection removes it.
		return &Ended{Reason: "ended"}, s.conn.Close()
	}
	// A failed write is not the end: the agent ends a sandbox by itself
	// once its last process exits, sends the last events and Ended, and
	// closes, perhaps before this request. What it sent is still to be
	// read, and the reader stops at the close; closing here first lost
	// the last events and reported the close as the agent's.
	_ = s.conn.Write(&Request{V: Version, Op: OpEnd, End: &EndRequest{Sandbox: s.Sandbox.Name}}, timeout)
	select {
	case <-s.done:
	case <-time.After(timeout):
		// Said before the close, which the reader would otherwise take
		// for the agent's: the agent is alive but slow to end (its
		// settle waits for a backlog of events), and what it had not
		// sent yet is lost. Closing still ends the sandbox.
		s.finish(nil, fmt.Errorf("the agent had not ended it within %s, so its last events may be missing", timeout))
		s.conn.Close()
		<-s.done
	}
	s.conn.Close()
	return s.Result()
}

// Close drops the session; the agent then ends the sandbox.
func (s *Session) Close() error {
	err := s.conn.Close()
	if s.placed {
		<-s.done
	}
	return err
}
