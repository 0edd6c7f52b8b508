//go:build linux || darwin

package run

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// Without --events the reporter must get a nil io.Writer, not a nil
// *os.File in one: it writes JSON to any non-nil writer, and every write
// to a nil file fails (a warning on each run without --events).
func TestOpenEventsNoneIsNilWriter(t *testing.T) {
	w, closeEvents, err := openEvents("", nil, false, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer closeEvents()
	if w != nil {
		t.Fatalf("openEvents(\"\") = %#v, want a nil io.Writer", w)
	}
}

func TestOpenEventsAppendsAndRefusesWithExitSandbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, closeEvents, err := openEvents(path, nil, false, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("second\n")); err != nil {
		t.Fatal(err)
	}
	closeEvents()
	if b, _ := os.ReadFile(path); string(b) != "first\nsecond\n" {
		t.Fatalf("events file = %q, want the line appended", b)
	}

	_, closeEvents, err = openEvents(filepath.Join(t.TempDir(), "no", "such", "dir"), nil, false, 0, 0)
	closeEvents() // safe on failure too
	if msg, code := cmdutil.Classify(err); code != cmdutil.ExitSandbox || msg == "" {
		t.Fatalf("unopenable --events: exit %d %q, want %d with the reason", code, msg, cmdutil.ExitSandbox)
	}
}

func TestRefusingAndSignalExit(t *testing.T) {
	cause := errors.New("no landlock")
	err := refusing(cmdutil.ExitNoEnforcement, "claude", cause)
	msg, code := cmdutil.Classify(err)
	if code != cmdutil.ExitNoEnforcement || msg != "refusing to run claude: no landlock" || !errors.Is(err, cause) {
		t.Fatalf("refusing: exit %d %q (wraps cause: %v)", code, msg, errors.Is(err, cause))
	}
	if msg, code := cmdutil.Classify(signalExit(syscall.SIGTERM)); code != 128+15 || msg != "" {
		t.Fatalf("signalExit(SIGTERM): exit %d %q, want 143 and no message", code, msg)
	}
}
