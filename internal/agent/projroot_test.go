//go:build linux

package agent

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestCreateRefusesMachineAsProject: a request naming / or /proc as the
// project is refused for every peer, root too, before the backend walks
// anything (the fanotify backend walked / and failed on
// /proc/PID/net); the home as the project is a sandbox like any other.
func TestCreateRefusesMachineAsProject(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	home := t.TempDir()
	var added atomic.Int32
	ta.be.mu.Lock()
	ta.be.onAdd = func(*enforce.Sandbox) error { added.Add(1); return nil }
	ta.be.mu.Unlock()
	for _, root := range []string{"/", "/proc", "/sys"} {
		_, err := ta.client.CreateSandbox(context.Background(), api.CreateRequest{Home: home, ProjectRoot: root, Command: []string{"true"}})
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeForbidden || !strings.Contains(ae.Message, "cd into your project's directory") {
			t.Errorf("project %s: %v, want forbidden, saying to cd into the project", root, err)
		}
		if n := added.Load(); n != 0 {
			t.Fatalf("project %s: the backend was given %d sandboxes", root, n)
		}
	}
	s, err := ta.client.CreateSandbox(context.Background(), api.CreateRequest{Home: home, ProjectRoot: home, Command: []string{"true"}})
	if err != nil {
		t.Fatalf("the home as the project: %v", err)
	}
	if _, err := s.End(5 * time.Second); err != nil {
		t.Errorf("end: %v", err)
	}
}
