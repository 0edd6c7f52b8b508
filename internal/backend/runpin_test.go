//go:build linux

package backend

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/enforce"
)

// The agent must not adopt what an embedded agent pinned, nor keep records
// for it: nothing would claim them.
var _ enforce.Backend = (*runPinned)(nil)

func TestRunPinnedIsNoPinner(t *testing.T) {
	var b enforce.Backend = &runPinned{}
	if _, ok := b.(enforce.Pinner); ok {
		t.Fatal("a run's pinned backend is an enforce.Pinner: the agent would adopt and record its sandboxes")
	}
	for _, ok := range []bool{
		func() bool { _, ok := b.(enforce.Flusher); return ok }(),
		func() bool { _, ok := b.(enforce.Limited); return ok }(),
		func() bool { _, ok := b.(enforce.UnixSockets); return ok }(),
	} {
		if !ok {
			t.Fatal("a run's pinned backend lost a capability of the Composite")
		}
	}
}

// A run whose pins cannot be made does not get a backend: the tool must
// not start with programs that its agent's death would detach.
func TestRunPinFailsClosed(t *testing.T) {
	old := runPinRoot
	runPinRoot = filepath.Join(t.TempDir(), "no-bpffs")
	t.Cleanup(func() { runPinRoot = old })
	b, err := openLSM(Options{RunPin: "aigate"})
	if err == nil {
		b.Close()
		t.Fatal("the BPF-LSM backend opened without its pins")
	}
	if !strings.Contains(err.Error(), "pin") {
		t.Errorf("error does not say what failed: %v", err)
	}
}

// ReapRunPins removes the pins of a run only when that run's process and
// sandboxes are gone, and only for its own cgroup parent.
func TestReapRunPins(t *testing.T) {
	old := runPinRoot
	runPinRoot = t.TempDir()
	t.Cleanup(func() { runPinRoot = old })
	mk := func(parent, pid string) string {
		dir := filepath.Join(runPinRoot, runPinStem(parent)+pid+"-123")
		if err := os.MkdirAll(filepath.Join(dir, "net"), 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	gone := mk("aigate", "100")        // process and sandboxes gone: reaped
	alive := mk("aigate", "200")       // still left: kept
	other := mk("aigate-other", "100") // another parent's: not this run's to judge
	odd := filepath.Join(runPinRoot, runPinStem("aigate")+"x-1")
	if err := os.Mkdir(odd, 0o700); err != nil {
		t.Fatal(err)
	}
	var asked []int
	err := ReapRunPins("aigate", func(pid int) bool { asked = append(asked, pid); return pid == 200 })
	if err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]bool{gone: false, alive: true, other: true, odd: true} {
		_, err := os.Stat(dir)
		if exists := !errors.Is(err, os.ErrNotExist); exists != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(dir), exists, want)
		}
	}
	if len(asked) != 2 {
		t.Errorf("asked about pids %v, want 100 and 200 once each", asked)
	}
}
