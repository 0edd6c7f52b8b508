//go:build linux

package api

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRefusedBeforeRequest: an agent that refuses a connection before
// reading its request (its client gone by the time it was accepted, a
// connection limit) writes its reason and closes; the client's request
// then fails to write ("broken pipe"), and what the user sees must be the
// agent's reason, not the pipe.
func TestRefusedBeforeRequest(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *Conn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		nc, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return NewConn(nc)
	}
	agent, client := conn(fds[0]), conn(fds[1])
	defer client.Close()
	if err := agent.Write(&Response{Error: &Error{Code: CodeForbidden, Message: "the client (pid 42) has exited"}}, 0); err != nil {
		t.Fatal(err)
	}
	agent.Close()
	_, err = exchange(client, &Request{Op: OpCreate, Create: &CreateRequest{Command: []string{"true"}}})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeForbidden || !strings.Contains(e.Message, "has exited") {
		t.Fatalf("exchange after the agent refused and closed: %v, want its refusal", err)
	}
}

// TestOlderAgentRefusesPlace: an agent of protocol version 2 refuses a
// create that carries place as malformed (it decodes before it checks the
// version); the client says to restart the agent instead.
func TestOlderAgentRefusesPlace(t *testing.T) {
	err := olderAgent(&Error{Code: CodeBadRequest, Message: `malformed message: json: unknown field "place"`})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeVersion || !strings.Contains(e.Message, "restart") {
		t.Fatalf("got %v, want a version error saying to restart the agent", err)
	}
	other := &Error{Code: CodeBadRequest, Message: "create: home \"x\" is not absolute"}
	if got := olderAgent(other); got != error(other) {
		t.Fatalf("another refusal changed: %v", got)
	}
}
