//go:build linux

package api

import (
	"net"
	"os"
	"strings"
	"syscall"
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

// TestEndAfterAgentClosed: the agent ended the sandbox by itself (its last
// process exited), sent the last event and Ended, and closed before the
// client asked: End's request fails, and what the agent sent is still
// read (closing first lost the event and blamed the agent).
func TestEndAfterAgentClosed(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "session")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	client, agentSide := conn(fds[0]), conn(fds[1])
	agent := NewConn(agentSide)
	if err := agent.WriteEvents([]events.Event{{Kind: events.KindFile, Op: "write", Path: "/h/.claude/x"}}, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := agent.Write(&Response{OK: true, Ended: &Ended{Reason: "empty", Events: 1}}, time.Second); err != nil {
		t.Fatal(err)
	}
	agentSide.Close()
	s := &Session{
		Sandbox: SandboxInfo{Name: "s1"},
		conn:    NewConn(client),
		events:  make(chan events.Event, sessionBuffer),
		done:    make(chan struct{}),
		placed:  true,
	}
	s.conn.BufferReads()
	// The reader starts after End's request has failed, as when the
	// client saw its command exit before reading the agent's last
	// messages.
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.read()
	}()
	ended, err := s.End(5 * time.Second)
	if err != nil || ended == nil || ended.Reason != "empty" {
		t.Fatalf("End: %+v, %v; want the agent's Ended", ended, err)
	}
	if e, ok := <-s.Events(); !ok || e.Path != "/h/.claude/x" {
		t.Errorf("event %+v (%v), want the agent's last one", e, ok)
	}
}
