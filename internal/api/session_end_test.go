//go:build linux

package api

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
)

// placedSession is a session whose sandbox is placed, talking to agent
// over a pipe.
func placedSession(t *testing.T) (*Session, *Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	s := &Session{
		Sandbox: SandboxInfo{Name: "s1"},
		conn:    NewConn(a),
		events:  make(chan events.Event, sessionBuffer),
		done:    make(chan struct{}),
	}
	s.placedStream(1)
	return s, NewConn(b)
}

// TestEndWaitsForEnded: End returns the agent's Ended when it comes
// within the timeout, however long the agent took to end the sandbox.
func TestEndWaitsForEnded(t *testing.T) {
	s, agent := placedSession(t)
	go func() {
		var r Request
		if agent.Read(&r, time.Time{}) != nil || r.Op != OpEnd {
			return
		}
		time.Sleep(100 * time.Millisecond) // settling the last events
		_ = agent.Write(&Response{OK: true, Ended: &Ended{Reason: "ended", Events: 9}}, time.Second)
	}()
	ended, err := s.End(5 * time.Second)
	if err != nil || ended == nil || ended.Events != 9 {
		t.Fatalf("End: %+v, %v; want the agent's Ended with 9 events", ended, err)
	}
}

// TestEndTimeoutSaysSo: an agent still ending the sandbox when End gives
// up is not reported as one that closed the session (the client closed
// it): the error says the last events may be missing.
func TestEndTimeoutSaysSo(t *testing.T) {
	s, agent := placedSession(t)
	go func() {
		var r Request
		_ = agent.Read(&r, time.Time{}) // the end request, never answered
		_ = agent.Read(&r, time.Time{}) // until the client closes
	}()
	ended, err := s.End(50 * time.Millisecond)
	if ended != nil || err == nil {
		t.Fatalf("End: %+v, %v; want an error", ended, err)
	}
	if strings.Contains(err.Error(), "agent closed the session") || !strings.Contains(err.Error(), "last events may be missing") {
		t.Errorf("End's error %q, want one saying the agent had not ended the sandbox in time", err)
	}
}
