//go:build linux

package api

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
)

// A message on the wire is a 4-byte big-endian length followed by that many
// bytes of JSON. A length prefix (rather than newline-delimited JSON) lets
// the reader refuse an oversized message before reading it.

// ErrTooLarge is returned for a message over MaxMessage.
var ErrTooLarge = fmt.Errorf("message larger than %d bytes", MaxMessage)

// Conn is one protocol connection. Writes are serialised, so a stream and
// the answer to a request never interleave; reads are the caller's to
// serialise.
type Conn struct {
	c    net.Conn
	r    io.Reader
	wmu  sync.Mutex
	wbuf bytes.Buffer
	ebuf []byte // WriteEvents's
}

// NewConn wraps c.
func NewConn(c net.Conn) *Conn { return &Conn{c: c, r: c} }

// Raw is the underlying connection.
func (c *Conn) Raw() net.Conn { return c.c }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// BufferReads makes Read take what the connection has in one read
// syscall rather than two per message (header, body). For a stream's
// reader, which reads nothing else from the connection from then on; the
// agent keeps its reads unbuffered, so that 1,000 idle sessions hold no
// buffer each.
func (c *Conn) BufferReads() { c.r = bufio.NewReaderSize(c.c, 64<<10) }

// Read reads one message into v. With deadline non-zero, the whole message
// must arrive by then: a client that sends a byte a minute cannot hold a
// connection open forever.
func (c *Conn) Read(v any, deadline time.Time) error {
	if err := c.c.SetReadDeadline(deadline); err != nil {
		return err
	}
	data, err := readFrame(c.r)
	if err != nil {
		return err
	}
	return decodeJSON(data, v)
}

// RefusedBeforeRequest is, after a request could not be written, the
// refusal the agent sent before it closed the connection without reading
// one (a client gone by the time it was accepted, a connection limit, the
// agent shutting down): the reason to show, where the failed write says
// only "broken pipe". Nil when there is none.
func (c *Conn) RefusedBeforeRequest() *Error {
	var resp Response
	if c.Read(&resp, time.Now().Add(time.Second)) != nil || resp.OK || resp.Error == nil {
		return nil
	}
	return resp.Error
}

// ReadStream reads one item of a stream: a batch of events (appended to
// evs; r is left alone), or any other message into r. Streams of protocol
// version 2 send their events in batches (BinaryEvents).
func (c *Conn) ReadStream(r *Response, evs []events.Event) ([]events.Event, error) {
	if err := c.c.SetReadDeadline(time.Time{}); err != nil {
		return evs, err
	}
	data, err := readFrame(c.r)
	if err != nil {
		return evs, err
	}
	if len(data) > 0 && data[0] == evBatchTag {
		evs, err = decodeEvents(data, evs)
		if err != nil {
			return evs, &DecodeError{err}
		}
		return evs, nil
	}
	return evs, decodeJSON(data, r)
}

// WriteEvents sends evs as one batch (see ReadStream), which must arrive
// within timeout (zero: no limit).
func (c *Conn) WriteEvents(evs []events.Event, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ebuf = appendEvents(append(c.ebuf[:0], 0, 0, 0, 0), evs)
	n := len(c.ebuf) - 4
	if n > MaxMessage {
		return ErrTooLarge
	}
	binary.BigEndian.PutUint32(c.ebuf, uint32(n))
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if err := c.c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := c.c.Write(c.ebuf)
	if cap(c.ebuf) > 64<<10 {
		c.ebuf = nil // a batch of long paths: not kept for an idle stream
	}
	return err
}

func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &DecodeError{err}
	}
	if dec.More() {
		return &DecodeError{errors.New("trailing data after the JSON value")}
	}
	return nil
}

// Write sends one message, which must arrive within timeout (zero: no
// limit): a client that stops reading is cut off rather than blocking the
// agent.
func (c *Conn) Write(v any, timeout time.Duration) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	if len(data) > MaxMessage {
		return ErrTooLarge
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if err := c.c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	c.wbuf.Reset()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(data)))
	c.wbuf.Write(hdr[:])
	c.wbuf.Write(data)
	_, err = c.c.Write(c.wbuf.Bytes())
	return err
}

// DecodeError is a message that is not the JSON the protocol expects.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string { return "malformed message: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// WriteMany sends vs as one write: the messages of a stream that has
// several queued cost one syscall, not one each. timeout is Write's.
func (c *Conn) WriteMany(vs []any, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf.Reset()
	for _, v := range vs {
		var hdr [4]byte
		c.wbuf.Write(hdr[:])
		start := c.wbuf.Len()
		if err := json.NewEncoder(&c.wbuf).Encode(v); err != nil {
			return fmt.Errorf("encode message: %w", err)
		}
		c.wbuf.Truncate(c.wbuf.Len() - 1) // Encode's newline
		n := c.wbuf.Len() - start
		if n > MaxMessage {
			return ErrTooLarge
		}
		binary.BigEndian.PutUint32(c.wbuf.Bytes()[start-4:start], uint32(n))
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if err := c.c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := c.c.Write(c.wbuf.Bytes())
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return nil, ErrTooLarge
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("truncated message: %w", err)
	}
	return data, nil
}
