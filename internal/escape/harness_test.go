//go:build linux

package escape

import (
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeHarness is the suite's control: with the defaults, ordinary
// work inside the sandbox succeeds as the test user, and the plainest
// attack (reading the project's .env) is refused with an event. If this
// fails, no other result of the suite means anything.
func TestEscapeHarness(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		r := b.sh("id -u; echo work > notes.txt; cat notes.txt; cat .env")
		if r.code == 0 || strings.Contains(r.stdout, "sk-escape-test-secret") {
			t.Fatalf("the secret was read:\n%s", r)
		}
		if !strings.Contains(r.stdout, "work") {
			t.Errorf("ordinary work failed:\n%s", r)
		}
		if got := strings.SplitN(r.stdout, "\n", 2)[0]; got == "0" {
			t.Errorf("the command ran as root:\n%s", r)
		}
		if _, ok := r.denied(events.OpRead, ".env"); !ok {
			t.Errorf("no read event for .env:\n%s", r)
		}
	})
}

// TestGuestBackends: the 6.12 guest (make vmtest's AIGATE_ESCAPE_VM_FANOTIFY
// =kernel) leaves out only the fanotify variants of tests that are not
// kernel-bound; everywhere else, and for kernel-bound tests there, both
// backends run. Pure: it reads the environment only.
func TestGuestBackends(t *testing.T) {
	for _, c := range []struct {
		vm, fan     string
		kernelBound bool
		want        string
	}{
		{"", "", false, "fanotify lsm"},
		{"", "kernel", false, "fanotify lsm"}, // the host ignores it
		{"1", "", false, "fanotify lsm"},
		{"1", "all", false, "fanotify lsm"},
		{"1", "kernel", true, "fanotify lsm"},
		{"1", "kernel", false, "lsm"},
	} {
		t.Setenv("AIGATE_VMTEST", c.vm)
		t.Setenv(vmFanotifyEnv, c.fan)
		if got := strings.Join(guestBackends(c.kernelBound), " "); got != c.want {
			t.Errorf("AIGATE_VMTEST=%q %s=%q kernel-bound %v: %q, want %q", c.vm, vmFanotifyEnv, c.fan, c.kernelBound, got, c.want)
		}
	}
}
