//go:build linux

package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
)

// ErrNoAgent means nothing listens on the socket.
var ErrNoAgent = errors.New("the aigate agent is not running")

// requestTimeout bounds a request/response exchange.
const requestTimeout = 30 * time.Second

// Client talks to the agent. Each call uses its own connection, so a Client
// is safe for concurrent use and survives an agent restart between calls.
type Client struct {
	Socket string
}

// NewClient returns a client for the socket at path ("" is SocketPath()).
func NewClient(path string) *Client {
	if path == "" {
		path = SocketPath()
	}
	return &Client{Socket: path}
}

func (c *Client) dial(ctx context.Context) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("%w (no one listens on %s): start it with `sudo systemctl start aigate` or `sudo aigate agent`", ErrNoAgent, c.Socket)
		case errors.Is(err, os.ErrPermission):
			// Wrapped so that callers can tell "not allowed" from "not there".
			return nil, fmt.Errorf("connect to the aigate agent at %s: %w: you are not in the %q group (run `sudo aigate setup`, then log in again)", c.Socket, os.ErrPermission, Group)
		}
		return nil, fmt.Errorf("connect to the aigate agent: %w", err)
	}
	conn := NewConn(nc)
	// A cancelled context closes the connection, which ends any read.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	_ = stop
	return conn, nil
}

// roundTrip sends req on a new connection and reads one response.
func (c *Client) roundTrip(ctx context.Context, req *Request) (*Response, *Conn, error) {
	req.V = Version
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	resp, err := exchange(conn, req)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return resp, conn, nil
}

func exchange(conn *Conn, req *Request) (*Response, error) {
	if err := conn.Write(req, requestTimeout); err != nil {
		if e := conn.RefusedBeforeRequest(); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("send %s request to the agent: %w", req.Op, err)
	}
	var resp Response
	if err := conn.Read(&resp, time.Now().Add(requestTimeout)); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the agent closed the connection", req.Op)
		}
		return nil, fmt.Errorf("read the agent's answer to %s: %w", req.Op, err)
	}
	if !resp.OK {
		if resp.Error == nil {
			return nil, &Error{CodeInternal, "the agent refused without saying why"}
		}
		return nil, resp.Error
	}
	return &resp, nil
}

// Status asks for the agent's state.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	resp, conn, err := c.roundTrip(ctx, &Request{Op: OpStatus})
	if err != nil {
		return nil, err
	}
	conn.Close()
	if resp.Status == nil {
		return nil, errors.New("status: the agent sent no status")
	}
	return resp.Status, nil
}

// List returns the sandboxes the caller may see: their own, or all for root.
func (c *Client) List(ctx context.Context) ([]SandboxInfo, error) {
	resp, conn, err := c.roundTrip(ctx, &Request{Op: OpList})
	if err != nil {
		return nil, err
	}
	conn.Close()
	return resp.Sandboxes, nil
}

// End ends a sandbox: kills what runs in it and removes it.
func (c *Client) End(ctx context.Context, name string) error {
	_, conn, err := c.roundTrip(ctx, &Request{Op: OpEnd, End: &EndRequest{Sandbox: name}})
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

// Stream is a live sequence of events.
type Stream struct {
	conn    *Conn
	pending []events.Event // of the last batch, not returned yet
}

// Watch starts streaming the events the caller may see that match f.
func (c *Client) Watch(ctx context.Context, f WatchRequest) (*Stream, error) {
	_, conn, err := c.roundTrip(ctx, &Request{Op: OpWatch, Watch: &f})
	if err != nil {
		return nil, err
	}
	return &Stream{conn: conn}, nil
}

// Next returns the next event, or the number of events lost since the
// last call when dropped > 0 (ev is then nil). io.EOF means the agent
// closed the stream (it stopped or restarted).
func (s *Stream) Next() (ev *events.Event, dropped uint64, err error) {
	for {
		if len(s.pending) > 0 {
			e := s.pending[0]
			s.pending = s.pending[1:]
			return &e, 0, nil
		}
		var r Response
		s.pending, err = s.conn.ReadStream(&r, s.pending[:0])
		if err != nil {
			s.pending = nil
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
				err = io.EOF
			}
			return nil, 0, err
		}
		if len(s.pending) > 0 {
			continue
		}
		switch {
		case r.Error != nil:
			return nil, 0, r.Error
		case r.Event != nil:
			return r.Event, 0, nil
		case r.Dropped > 0:
			return nil, r.Dropped, nil
		}
	}
}

// Close ends the stream.
func (s *Stream) Close() error { return s.conn.Close() }

// Trust reads (TrustGet) or changes the caller's trust records kept by the
// agent. A records.Held false answer means the agent keeps none.
func (c *Client) Trust(ctx context.Context, t TrustRequest) (*TrustRecords, error) {
	resp, conn, err := c.roundTrip(ctx, &Request{Op: OpTrust, Trust: &t})
	if err != nil {
		return nil, err
	}
	conn.Close()
	if resp.Trust == nil {
		return nil, errors.New("trust: the agent sent no trust records (an older agent? restart it)")
	}
	return resp.Trust, nil
}

// Policy compares (PolicyCheck) or accepts (PolicyAccept) the caller's
// global policy against the record the agent keeps. A state.Held false
// answer means the agent keeps none.
func (c *Client) Policy(ctx context.Context, p PolicyRequest) (*PolicyState, error) {
	resp, conn, err := c.roundTrip(ctx, &Request{Op: OpPolicy, Policy: &p})
	if err != nil {
		return nil, err
	}
	conn.Close()
	if resp.Policy == nil {
		return nil, errors.New("policy: the agent sent no policy state (an older agent? restart it)")
	}
	return resp.Policy, nil
}
