package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// fakeDynmods stands for the machine's option: the tests must not change
// the real one (machine-wide, and partly kept until the next boot on Linux
// 6.18). It returns the factory, its output and the calls made.
type fakeDynmods struct {
	on   bool
	err  error // what a change returns
	sets []bool
}

func withFakeDynmods(t *testing.T, d *fakeDynmods) (*cmdutil.Factory, *bytes.Buffer, *observer.ObservedLogs) {
	t.Helper()
	oldRead, oldSet, oldMark := readDynmods, setDynmods, dynmodsMark
	t.Cleanup(func() { readDynmods, setDynmods, dynmodsMark = oldRead, oldSet, oldMark })
	dynmodsMark = filepath.Join(t.TempDir(), "state", "favordynmods")
	readDynmods = func() (cgroup.DynmodsState, error) {
		return cgroup.DynmodsState{Mountpoint: "/sys/fs/cgroup", On: d.on}, nil
	}
	setDynmods = func(on bool) error {
		d.sets = append(d.sets, on)
		if d.err != nil {
			return d.err
		}
		d.on = on
		return nil
	}
	core, logs := observer.New(zap.InfoLevel)
	var out bytes.Buffer
	return &cmdutil.Factory{Out: &out, Err: &out, Log: zap.New(core)}, &out, logs
}

func marked() bool {
	_, err := os.Stat(dynmodsMark)
	return err == nil
}

func TestSetupFavorDynmods(t *testing.T) {
	d := &fakeDynmods{}
	f, out, _ := withFakeDynmods(t, d)
	if err := setupFavorDynmods(f, true); err != nil {
		t.Fatal(err)
	}
	if !d.on || !marked() || !strings.Contains(out.String(), "undo: sudo aigate setup --favordynmods=false") {
		t.Fatalf("after setup: on=%v marked=%v, output %q", d.on, marked(), out)
	}
	// Setup again: nothing to change.
	if err := setupFavorDynmods(f, true); err != nil || len(d.sets) != 1 {
		t.Fatalf("second setup: %v, sets %v", err, d.sets)
	}
	// Undo clears what setup set, and forgets it.
	if err := setupFavorDynmods(f, false); err != nil {
		t.Fatal(err)
	}
	if d.on || marked() {
		t.Fatalf("after undo: on=%v marked=%v", d.on, marked())
	}
	// A second undo has nothing of setup's to clear.
	if err := undoFavorDynmods(f); err != nil || len(d.sets) != 2 {
		t.Fatalf("second undo: %v, sets %v", err, d.sets)
	}
}

// Someone else's favordynmods is left alone, by setup and by its undo.
func TestSetupFavorDynmodsLeavesOthers(t *testing.T) {
	d := &fakeDynmods{on: true}
	f, out, _ := withFakeDynmods(t, d)
	if err := setupFavorDynmods(f, true); err != nil {
		t.Fatal(err)
	}
	if err := undoFavorDynmods(f); err != nil {
		t.Fatal(err)
	}
	if len(d.sets) != 0 || marked() || !d.on || !strings.Contains(out.String(), "set by someone else") {
		t.Fatalf("sets %v, marked %v, on %v, output %q", d.sets, marked(), d.on, out)
	}
}

// A refused change (an old kernel, a read-only mount) is an error and
// records nothing, so reset will not try to undo it.
func TestSetupFavorDynmodsRefused(t *testing.T) {
	for _, e := range []error{cgroup.ErrNoFavorDynmods, errors.New("the cgroup v2 mount at /sys/fs/cgroup is read-only")} {
		d := &fakeDynmods{err: e}
		f, _, _ := withFakeDynmods(t, d)
		if err := setupFavorDynmods(f, true); !errors.Is(err, e) {
			t.Errorf("setup with %v: %v", e, err)
		}
		if marked() {
			t.Errorf("setup with %v left a mark", e)
		}
	}
}

// The agent sets it again only when setup asked for it and it is off.
func TestAgentFavorDynmods(t *testing.T) {
	d := &fakeDynmods{}
	f, _, logs := withFakeDynmods(t, d)
	agentFavorDynmods(f)
	if len(d.sets) != 0 {
		t.Fatalf("without setup's mark the agent changed it: %v", d.sets)
	}
	if err := os.MkdirAll(filepath.Dir(dynmodsMark), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dynmodsMark, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	agentFavorDynmods(f)
	if !d.on || logs.FilterMessageSnippet("set favordynmods").Len() != 1 {
		t.Fatalf("with the mark: on=%v, logs %v", d.on, logs.All())
	}
	agentFavorDynmods(f)
	if len(d.sets) != 1 {
		t.Fatalf("already on, the agent set it again: %v", d.sets)
	}
	// A failure is logged, and the agent goes on.
	d.on, d.err = false, cgroup.ErrNoFavorDynmods
	agentFavorDynmods(f)
	if logs.FilterMessageSnippet("could not set favordynmods").Len() != 1 {
		t.Fatalf("failure not logged: %v", logs.All())
	}
}

// setup changes favordynmods only when the flag is given, either way.
func TestSetupDynmodsOnlyWhenAsked(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "left"},
		{[]string{"--favordynmods"}, "on"},
		{[]string{"--favordynmods=true"}, "on"},
		{[]string{"--favordynmods=false"}, "off"},
	} {
		cmd := newSetupCmd(&cmdutil.Factory{})
		if err := cmd.ParseFlags(c.args); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		on, _ := cmd.Flags().GetBool("favordynmods")
		got := "left"
		if p := dynmodsAsked(cmd, on); p != nil && *p {
			got = "on"
		} else if p != nil {
			got = "off"
		}
		if got != c.want {
			t.Errorf("setup %v: favordynmods %s, want %s", c.args, got, c.want)
		}
	}
}
