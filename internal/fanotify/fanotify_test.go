package fanotify

import (
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

func TestDenyReadByPath(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.write(filepath.Join(e.project, "config", "secret.txt"), "s3cret")
	other := e.write(filepath.Join(e.project, "config", "other.txt"), "fine")
	s := e.sandbox(policy.Policy{DenyRead: rules("config/secret.txt")})

	if got := e.run(s, "open", secret, "r"); got != "EPERM" {
		t.Fatalf("sandboxed read of %s: %s, want EPERM", secret, got)
	}
	ev := e.event()
	if ev.Kind != events.KindFile || ev.Op != events.OpRead || ev.Path != secret || ev.Backend != "fanotify" ||
		ev.Sandbox != s.Name || ev.CgroupID != s.CgroupID || ev.PID == 0 || ev.TGID == 0 || ev.Rule != 1 || ev.RuleText != "config/secret.txt" {
		t.Fatalf("event %+v", ev)
	}
	// The same file outside the sandbox, and another file inside it.
	openHere(t, secret, unix.O_RDONLY)
	if got := e.run(nil, "open", secret, "r"); got != "ok" {
		t.Fatalf("read outside the sandbox: %s", got)
	}
	if got := e.run(s, "open", other, "r"); got != "ok" {
		t.Fatalf("sandboxed read of %s: %s", other, got)
	}
	e.noEvent()
	if n := e.count(events.KindFile, events.OpRead, false); n != 1 {
		t.Fatalf("read counter %d, want 1", n)
	}
}
