//go:build linux

package fanotify

import (
	"errors"
	"testing"
)

// TestGuardClosedBeat: once Close has ended the guard, a heartbeat says
// so with errGuardClosed, which the reap loop does not log as an error
// (it still ticks while the guard kills what is left: `sudo aigate run`
// printed "ERROR fanotify guard heartbeat" at the end of a run).
func TestGuardClosedBeat(t *testing.T) {
	g := &guard{fd: -1}
	if err := g.beat(); !errors.Is(err, errGuardClosed) {
		t.Fatalf("beat on a closed guard: %v, want errGuardClosed", err)
	}
}
