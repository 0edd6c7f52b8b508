//go:build linux

package fanotify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestPerSandboxHome: an agent opens one backend for every user, so name
// rules must be walked under each sandbox's own home and project, not the
// ones the backend was opened with.
func TestPerSandboxHome(t *testing.T) {
	e := newEnv(t, nil)
	other := t.TempDir() // another user's home, unknown to the backend
	otherProj := filepath.Join(other, "work")
	secret := e.write(filepath.Join(otherProj, "deep", ".env"), "K=v")
	key := e.write(filepath.Join(other, ".ssh", "id_ed25519"), "key")

	p := policy.Policy{DenyRead: rules(".env", "id_*")}
	c, err := policy.Compile(&p, policy.Env{Home: other, ProjectRoot: otherProj})
	if err != nil {
		t.Fatal(err)
	}
	g, err := cgroup.Create("aigate-test", fmt.Sprintf("fanhome%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})
	sb := &enforce.Sandbox{ID: 7, Name: "home", CgroupID: g.ID, CgroupPath: g.Path, Policy: c, Mode: c.Mode,
		Home: other, ProjectRoot: otherProj}
	if err := e.b.Add(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.b.Remove(sb.ID) })
	s := &sbox{Sandbox: sb, g: g}
	for _, path := range []string{secret, key} {
		if got := e.run(s, "open", path, "r"); got != "EPERM" {
			t.Errorf("sandboxed read of %s (below the sandbox's own home): %s, want EPERM", path, got)
			continue
		}
		if ev := e.event(); ev.Path != path || ev.Op != events.OpRead {
			t.Errorf("event %+v for %s", ev, path)
		}
	}
}
