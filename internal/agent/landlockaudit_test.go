//go:build linux

package agent

import (
	"os"
	"os/exec"
	"testing"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// TestLandlockOwner: a domain is a sandbox's when its creator runs in the
// sandbox or, once exited, was a process the agent placed there, and the
// record's uid owns the sandbox; a live process outside every sandbox owns
// nothing, even with a pid once placed.
func TestLandlockOwner(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	exited := gone.Process.Pid
	self := os.Getpid()
	uid := uint32(os.Getuid())
	b := &box{
		sb:      &sandbox.Sandbox{Info: enforce.Sandbox{CgroupPath: "/sys/fs/cgroup/aigate-test/s1", CgroupID: 42}},
		info:    api.SandboxInfo{Name: "s1", Owner: uid},
		helpers: []int{exited, self},
	}
	a := &Agent{log: zap.NewNop(), boxes: map[string]*box{"s1": b}, ll: &landlockAudit{mnt: "/sys/fs/cgroup"}}
	if o, ok := a.landlockOwner(exited, uid); !ok || o.Sandbox != "s1" || o.CgroupID != 42 {
		t.Errorf("exited helper: %+v %t, want s1", o, ok)
	}
	if o, ok := a.landlockOwner(exited, uid+1); ok {
		t.Errorf("exited helper, another uid: attributed to %+v", o)
	}
	// This test runs outside s1: its own pid, although listed, is not s1's.
	if o, ok := a.landlockOwner(self, uid); ok {
		t.Errorf("a live process outside: attributed to %+v", o)
	}
}
