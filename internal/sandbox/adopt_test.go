//go:build linux

package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/testutil/testcgroup"
)

// A sandbox whose creator died is swept, unless a live process adopted
// it; the adopted Sandbox's Close kills its processes, removes it from the
// backend and removes the cgroup.
func TestAdoptSurvivesSweep(t *testing.T) {
	parent, dir := testParent(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if pidAlive(dead.Process.Pid) {
		// skip-ok: the kernel handed the dead pid out again; the next run checks.
		t.Skip("pid reused already")
	}
	g, err := cgroup.Create(parent, Name(3, dead.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	child, reaped := testcgroup.StartIn(t, g, "sleep", "600")
	t.Cleanup(func() { child.Process.Kill(); <-reaped })

	info := enforce.Sandbox{ID: 3, Name: filepath.Base(g.Path), CgroupID: g.ID, CgroupPath: g.Path}
	be := &fakeBackend{added: map[uint32]*enforce.Sandbox{3: &info}}
	if _, err := Adopt(enforce.Sandbox{ID: 3, Name: info.Name, CgroupID: g.ID + 1, CgroupPath: g.Path}, be); err == nil {
		t.Fatal("adopted a cgroup with another id")
	}
	sb, err := Adopt(info, be)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := Sweep(parent)
	if err != nil || len(notes) != 0 {
		t.Fatalf("sweep: %q, %v; want it to leave the adopted sandbox alone", notes, err)
	}
	if pids, _ := sb.PIDs(); !slices.Contains(pids, child.Process.Pid) {
		t.Fatalf("pids %v after the sweep, want %d", pids, child.Process.Pid)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not kill the adopted sandbox's process")
	}
	if len(be.added) != 0 || !slices.Equal(be.calls, []string{"remove"}) {
		t.Fatalf("backend calls %v, left %v", be.calls, be.added)
	}
	if _, err := os.Stat(filepath.Join(dir, info.Name)); !os.IsNotExist(err) {
		t.Fatalf("cgroup still there: %v", err)
	}
}
