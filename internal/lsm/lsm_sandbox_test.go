//go:build linux

package lsm

import (
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

func TestLSMSandboxes(t *testing.T) {
	dir := tempDir(t)
	a := touch(t, dir+"/a")
	b := touch(t, dir+"/b")
	l := openLSM(t)
	enforced0, audited0 := violationCounts(t, l, events.OpRead)
	sbA := addSandbox(t, l, compiled(ruleSpec{policy.AccessRead, "paths", a}), policy.ModeEnforce)
	sbB := addSandbox(t, l, compiled(ruleSpec{policy.AccessRead, "paths", b}), policy.ModeEnforce)
	audit := addSandbox(t, l, compiled(ruleSpec{policy.AccessRead, "paths", a}), policy.ModeAudit)

	expectDenied(t, l, sbA, events.KindFile, a, 1, "open", a, "r")
	expectAllowed(t, sbA, "open", b, "r")
	expectDenied(t, l, sbB, events.KindFile, b, 1, "open", b, "r")
	expectAllowed(t, sbB, "open", a, "r")

	// A cgroup created below the sandbox stays confined.
	expectDenied(t, l, sbA, events.KindFile, a, 1, "mkcg", "open", a, "r")

	// Audit: allowed and reported.
	code, pid := run(t, audit, "open", a, "r")
	if code != 0 {
		t.Fatalf("open in audit sandbox: exit %d, want allowed", code)
	}
	ev := nextEvent(t, l)
	if !ev.Audit || ev.Path != a || int(ev.TGID) != pid || ev.CgroupID != audit.g.ID {
		t.Errorf("audit event %+v", ev)
	}
	noEvent(t, l)

	enforced, audited := violationCounts(t, l, events.OpRead)
	if enforced-enforced0 != 3 || audited-audited0 != 1 {
		t.Errorf("Stats: %d enforced and %d audited reads, want 3 and 1", enforced-enforced0, audited-audited0)
	}

	// After Remove the cgroup is no longer confined.
	if err := l.Remove(sbB.id); err != nil {
		t.Fatal(err)
	}
	expectAllowed(t, sbB, "open", b, "r")
}
