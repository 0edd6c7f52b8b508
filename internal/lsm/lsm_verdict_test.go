//go:build linux

package lsm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestLSMVerdictCache: file_open caches an allowed verdict per inode
// (bpf/include/verdict.h), and every way the same file can come to a
// denied path or under denying rules without a new inode still denies (and a
// new inode in a deleted one's place is checked afresh): its
// directory renamed into a protected one from outside the sandbox, the file
// renamed to a protected name, a hard link in a protected directory (before
// and after the old name is gone), the mount it is on moved under a
// protected path, the same policy id written again with a rule naming it,
// and a write open after a cached read open.
func TestLSMVerdictCache(t *testing.T) {
	l := openLSM(t)
	dir := tempDir(t)
	rules := []ruleSpec{
		{policy.AccessRead, "paths", dir + "/secret"}, // 1
		{policy.AccessRead, "names", ".env"},          // 2
		{policy.AccessWrite, "paths", dir + "/ro"},    // 3
	}
	sb := addSandbox(t, l, compiled(rules...), policy.ModeEnforce)
	if err := os.MkdirAll(dir+"/secret", 0o755); err != nil {
		t.Fatal(err)
	}

	// cached opens path in sb twice (allowed) and checks that a verdict
	// with want is stored for its inode: else the cases below would not
	// test the cache.
	cached := func(t *testing.T, sb *sandbox, path, mode string, want uint32) {
		t.Helper()
		for range 2 {
			if code, _ := run(t, sb, "open", path, mode); code != 0 {
				t.Fatalf("open(%s, %s) in sandbox: exit %d, want allowed", path, mode, code)
			}
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got, err := l.obj.CachedVerdict(f)
		if err != nil {
			t.Fatal(err)
		}
		if got&want != want {
			t.Fatalf("%s: cached verdict %#x, want %#x", path, got, want)
		}
	}
	denied := func(t *testing.T, sb *sandbox, path, mode string, op events.Op, rule uint32) {
		t.Helper()
		code, pid := run(t, sb, "open", path, mode)
		if code != exitEPERM {
			t.Errorf("open(%s, %s) in sandbox: exit %d, want EPERM", path, mode, code)
			return
		}
		ev := nextEvent(t, l)
		if ev.Kind != events.KindFile || ev.Op != op || ev.Rule != rule || int(ev.TGID) != pid {
			t.Errorf("open(%s): event %+v, want %v rule %d pid %d", path, ev, op, rule, pid)
		}
	}
	mv := func(t *testing.T, from, to string) {
		t.Helper()
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("parent renamed into a protected directory", func(t *testing.T) {
		f := touch(t, dir+"/pub/x/f")
		cached(t, sb, f, "r", loader.VerdictRead)
		mv(t, dir+"/pub/x", dir+"/secret/x")
		denied(t, sb, dir+"/secret/x/f", "r", events.OpRead, 1)
	})
	t.Run("file renamed to a protected name", func(t *testing.T) {
		f := touch(t, dir+"/app/config")
		cached(t, sb, f, "r", loader.VerdictRead)
		mv(t, f, dir+"/app/.env")
		denied(t, sb, dir+"/app/.env", "r", events.OpRead, 2)
	})
	t.Run("file deleted and a protected one created in its place", func(t *testing.T) {
		// The new file may get the freed inode number: a new inode all
		// the same, with no verdict stored.
		f := touch(t, dir+"/n/a")
		cached(t, sb, f, "r", loader.VerdictRead)
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		denied(t, sb, touch(t, dir+"/n/.env"), "r", events.OpRead, 2)
	})
	t.Run("hard link in a protected directory", func(t *testing.T) {
		f := touch(t, dir+"/pub/h")
		cached(t, sb, f, "r", loader.VerdictRead)
		if err := os.Link(f, dir+"/secret/h"); err != nil {
			t.Fatal(err)
		}
		denied(t, sb, dir+"/secret/h", "r", events.OpRead, 1)
		if err := os.Remove(f); err != nil { // one link again
			t.Fatal(err)
		}
		denied(t, sb, dir+"/secret/h", "r", events.OpRead, 1)
	})
	t.Run("mount moved under a protected path", func(t *testing.T) {
		// A private bind of dir on itself: a mount under a shared one
		// cannot be moved.
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		if err := unix.Mount("", dir, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			t.Fatal(err)
		}
		m := dir + "/mnt"
		if err := os.Mkdir(m, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", m, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dir+"/secret/mnt", unix.MNT_DETACH); _ = unix.Unmount(m, unix.MNT_DETACH) })
		f := touch(t, m+"/f")
		cached(t, sb, f, "r", loader.VerdictRead)
		if err := os.Mkdir(dir+"/secret/mnt", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(m, dir+"/secret/mnt", "", unix.MS_MOVE, ""); err != nil {
			t.Fatal(err)
		}
		denied(t, sb, dir+"/secret/mnt/f", "r", events.OpRead, 1)
	})
	t.Run("policy id written again with a rule naming the file", func(t *testing.T) {
		f := touch(t, dir+"/reuse/cfg")
		id := nextID
		nextID++
		other := addSandboxID(t, l, id, compiled(ruleSpec{policy.AccessRead, "names", "elsewhere"}))
		cached(t, other, f, "r", loader.VerdictRead)
		if err := l.Remove(id); err != nil {
			t.Fatal(err)
		}
		other = addSandboxID(t, l, id, compiled(ruleSpec{policy.AccessRead, "names", "cfg"}))
		denied(t, other, f, "r", events.OpRead, 1)
	})
	t.Run("write open after a cached read open", func(t *testing.T) {
		f := touch(t, dir+"/ro/f")
		cached(t, sb, f, "r", loader.VerdictRead)
		denied(t, sb, f, "w", events.OpWrite, 3)
		denied(t, sb, f, "t", events.OpWrite, 3)
	})
	t.Run("allowed write cached", func(t *testing.T) {
		f := touch(t, dir+"/rw/f")
		cached(t, sb, f, "w", loader.VerdictRead|loader.VerdictWrite)
	})
	noEvent(t, l)
}

var cgroupSeq int

// addSandboxID is addSandbox with a given policy id, in a cgroup of its
// own; the sandbox is removed at cleanup unless the test removed it.
func addSandboxID(t *testing.T, l *Backend, id uint32, p *policy.Compiled) *sandbox {
	t.Helper()
	cgroupSeq++
	g, err := cgroup.Create("aigate-loader-test", fmt.Sprintf("sb-%d-%d-%d", os.Getpid(), id, cgroupSeq))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})
	sb := &enforce.Sandbox{ID: id, Name: filepath.Base(g.Path), CgroupID: g.ID, CgroupPath: g.Path, Policy: p, Mode: policy.ModeEnforce}
	if err := l.Add(context.Background(), sb); err != nil {
		t.Fatalf("Add: %v", err)
	}
	t.Cleanup(func() { _ = l.Remove(id) })
	fd, err := g.OpenFD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	return &sandbox{id: id, g: g, fd: fd}
}
