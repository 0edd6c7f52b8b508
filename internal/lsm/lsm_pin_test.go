//go:build linux

package lsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// pinDir returns a fresh bpffs directory for one test's pins, removed
// (which detaches any link still pinned there) at cleanup.
func pinDir(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	if err := loader.ProbeLSM(); err != nil {
		testutil.SkipUnlessLSM(t, err.Error())
	}
	dir := fmt.Sprintf("/sys/fs/bpf/aigate-test-%d-%s", os.Getpid(), t.Name())
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func openPinned(t *testing.T, dir string) *Backend {
	t.Helper()
	l, err := Open(Options{ExecDirs: []string{}, PinPath: dir})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return l
}

// pinnedSandboxGroup creates a cgroup for a pinned sandbox; it is removed
// at cleanup, after the LSM that enforces it (cleanups run last first).
func pinnedSandboxGroup(t *testing.T, id uint32) (*enforce.Sandbox, *sandbox) {
	t.Helper()
	g, err := cgroup.Create("aigate-loader-test", fmt.Sprintf("pin-%d-%d", os.Getpid(), id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})
	fd, err := g.OpenFD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	sb := &enforce.Sandbox{ID: id, Name: fmt.Sprintf("pinned-%d", id), CgroupID: g.ID, CgroupPath: g.Path}
	return sb, &sandbox{id: id, g: g, fd: fd}
}

func violations(t *testing.T, l *Backend, op events.Op) uint64 {
	t.Helper()
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Violations {
		if c.Op == op && !c.Audit {
			return c.Value
		}
	}
	return 0
}

func linkID(t *testing.T, path string) link.ID {
	t.Helper()
	lk, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		t.Fatalf("pinned link: %v", err)
	}
	defer lk.Close()
	info, err := lk.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

// TestPinSurvivesRelease: a released (crashed) LSM keeps enforcing, a new
// one adopts the sandbox with its counters and pending events, and Close
// leaves nothing pinned.
func TestPinSurvivesRelease(t *testing.T) {
	dir := pinDir(t)
	files := tempDir(t)
	secret := touch(t, files+"/secret.txt")
	p := compiled(ruleSpec{policy.AccessRead, "paths", secret})

	l := openPinned(t, dir)
	sb, box := pinnedSandboxGroup(t, 901)
	sb.Policy = p
	if err := l.Add(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	expectDenied(t, l, box, events.KindFile, secret, 1, "open", secret, "r")
	before := violations(t, l, events.OpRead)
	id := linkID(t, filepath.Join(dir, "link_file_open"))

	if err := l.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	// No process holds anything now: the pins alone enforce.
	if code, _ := run(t, box, "open", secret, "r"); code != exitEPERM {
		t.Fatalf("after Release: exit %d, want EPERM", code)
	}
	expectAllowed(t, nil, "open", secret, "r")

	l2 := openPinned(t, dir)
	closed := false
	t.Cleanup(func() {
		if !closed {
			l2.Close()
		}
	})
	if got := linkID(t, filepath.Join(dir, "link_file_open")); got != id {
		t.Errorf("link id %d after adoption, want the pinned %d (attached twice?)", got, id)
	}
	ad := l2.Adopted()
	if len(ad) != 1 || ad[0].ID != sb.ID || ad[0].CgroupID != sb.CgroupID || ad[0].Name != sb.Name ||
		ad[0].CgroupPath != sb.CgroupPath || ad[0].Mode != policy.ModeEnforce {
		t.Fatalf("Adopted() = %+v, want sandbox %d at %s", ad, sb.ID, sb.CgroupPath)
	}
	// The denial made while no LSM was open waited in the ring buffer.
	ev := nextEvent(t, l2)
	if ev.Path != secret || ev.CgroupID != sb.CgroupID || ev.Rule != 1 {
		t.Errorf("event from the released period: %+v", ev)
	}
	if got := violations(t, l2, events.OpRead); got != before+1 {
		t.Errorf("read violations after adoption %d, want %d", got, before+1)
	}
	if err := l2.Claim(sb); err != nil {
		t.Fatal(err)
	}
	expectDenied(t, l2, box, events.KindFile, secret, 1, "open", secret, "r")
	if err := l2.Add(context.Background(), sb); err == nil {
		t.Error("Add of an adopted sandbox's id succeeded")
	}

	if err := l2.Remove(sb.ID); err != nil {
		t.Fatalf("Remove adopted: %v", err)
	}
	expectAllowed(t, box, "open", secret, "r")
	var n uint32
	for it := l2.obj.Objects().SetFlags.Iterate(); it.Next(&n, new(uint32)); {
		t.Errorf("set_flags still holds set %d after Remove", n)
	}

	closed = true
	if err := l2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		ents, _ := os.ReadDir(dir)
		t.Errorf("pin directory left after Close: %v %v", err, ents)
	}
}

// TestPinStaleAndLayout: a pinned sandbox whose cgroup went away while no
// agent ran is cleaned up, not adopted; pins of another layout are refused.
func TestPinStaleAndLayout(t *testing.T) {
	dir := pinDir(t)
	files := tempDir(t)
	secret := touch(t, files+"/secret.txt")

	l := openPinned(t, dir)
	g, err := cgroup.Create("aigate-loader-test", fmt.Sprintf("pin-stale-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Remove() })
	sb := &enforce.Sandbox{ID: 902, Name: "stale", CgroupID: g.ID, CgroupPath: g.Path,
		Policy: compiled(ruleSpec{policy.AccessRead, "paths", secret})}
	if err := l.Add(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}

	l2 := openPinned(t, dir)
	if ad := l2.Adopted(); len(ad) != 0 {
		t.Errorf("Adopted() = %+v, want nothing (cgroup removed)", ad)
	}
	for _, m := range []*ebpf.Map{l2.obj.Objects().SetFlags, l2.obj.Objects().Sandboxes, l2.obj.Objects().PathRules, l2.obj.PinInfo()} {
		k := make([]byte, m.KeySize())
		if err := m.NextKey(nil, k); !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Errorf("%s still has entries of the stale sandbox (%v)", m, err)
		}
	}
	var mask uint64
	if err := l2.obj.Objects().SandboxLevels.Lookup(uint32(0), &mask); err != nil || mask != 0 {
		t.Errorf("sandbox_levels = %#x, %v; want 0", mask, err)
	}
	if err := l2.Release(); err != nil {
		t.Fatal(err)
	}

	// Another build's layout.
	lm, err := ebpf.LoadPinnedMap(filepath.Join(dir, "layout"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lm.Update(uint32(0), uint64(42), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	lm.Close()
	_, err = Open(Options{ExecDirs: []string{}, PinPath: dir})
	if !errors.Is(err, loader.ErrPinLayout) {
		t.Fatalf("OpenLSM over another layout: %v, want ErrPinLayout", err)
	}
	t.Logf("refused: %v", err)
}
