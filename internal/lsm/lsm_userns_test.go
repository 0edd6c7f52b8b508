//go:build linux

package lsm

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// usernsHelper starts /bin/true in a new user namespace (clone with
// CLONE_NEWUSER: unshare would fail with EINVAL first, Go being threaded).
func usernsHelper() error {
	c := exec.Command("/bin/true")
	c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	err := c.Run()
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// TestLSMUserns: a sandboxed task cannot create a user namespace unless
// its policy says allow_userns, and each refusal is a process event; in
// audit mode it is reported and allowed; outside a sandbox nothing
// changes.
func TestLSMUserns(t *testing.T) {
	l := openLSM(t)
	if !l.RefusesUserNamespaces() {
		t.Fatal("the kernel has no userns_create hook (Linux 6.1+): run this in the 6.1 or 6.12 VM")
	}
	enforced0, audited0 := violationCounts(t, l, events.OpUserns)
	sb := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeEnforce}, policy.ModeEnforce)
	code, self := run(t, sb, "userns")
	if code != exitEPERM {
		t.Fatalf("userns in the sandbox: exit %d, want EPERM", code)
	}
	ev := nextEvent(t, l)
	if ev.Kind != events.KindProc || ev.Op != events.OpUserns || ev.Path != "new user namespace" || int(ev.TGID) != self || ev.Audit {
		t.Errorf("event %+v, want process userns \"new user namespace\" from %d", ev, self)
	}

	allowed := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeEnforce, Userns: true}, policy.ModeEnforce)
	expectAllowed(t, allowed, "userns")
	expectAllowed(t, nil, "userns")
	noEvent(t, l)

	audit := addSandbox(t, l, &policy.Compiled{Mode: policy.ModeAudit}, policy.ModeAudit)
	expectAllowed(t, audit, "userns")
	if ev := nextEvent(t, l); ev.Op != events.OpUserns || !ev.Audit {
		t.Errorf("audit: event %+v, want an audited userns", ev)
	}
	enforced, audited := violationCounts(t, l, events.OpUserns)
	if enforced-enforced0 < 1 || audited-audited0 < 1 {
		t.Errorf("userns counters: %d enforced, %d audited; want at least 1 each", enforced-enforced0, audited-audited0)
	}
}
