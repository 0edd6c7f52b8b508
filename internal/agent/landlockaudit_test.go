//go:build linux

package agent

import (
	"os"
	"os/exec"
	"testing"
	"time"

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

// TestSettleLandlock: the end of a sandbox waits for the audit reader to
// go quiet only when the kernel's audit is on (asked beside the sandbox's
// removal, landlockAuditOn): at once when it is off or no reader runs,
// until a quiet read after the deaths when it is on, and at most
// llSettleMax when the reader never goes quiet.
func TestSettleLandlock(t *testing.T) {
	if on := (&Agent{}).landlockAuditOn(); on() {
		t.Error("audit on without a reader")
	}
	timed := func(a *Agent, auditOn bool) time.Duration {
		start := time.Now()
		a.settleLandlock(auditOn)
		return time.Since(start)
	}
	never := &Agent{ll: &landlockAudit{}} // never quiet
	if d := timed(never, false); d > llSettleMax/2 {
		t.Errorf("audit off: waited %v", d)
	}
	if d := timed(&Agent{}, true); d > llSettleMax/2 {
		t.Errorf("no reader: waited %v", d)
	}
	if d := timed(never, true); d < llSettleMax {
		t.Errorf("audit on, reader never quiet: waited %v, want %v", d, llSettleMax)
	}
	quiet := &Agent{ll: &landlockAudit{}}
	go func() {
		time.Sleep(30 * time.Millisecond)
		quiet.ll.mu.Lock()
		quiet.ll.quiet = time.Now()
		quiet.ll.mu.Unlock()
	}()
	if d := timed(quiet, true); d < 30*time.Millisecond || d >= llSettleMax {
		t.Errorf("audit on, reader quiet after 30ms: waited %v", d)
	}
}
