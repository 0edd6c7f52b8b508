//go:build linux

package fanotify

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// overflowDuring fills the watcher's queue past its bound (16384 events)
// with file creations in a watched directory while its reader is held
// back (watchMu), runs during, and lets the reader go: what during did is
// lost with the other events and only the rescan after the overflow can
// find it.
func (e *env) overflowDuring(t *testing.T, dir string, during func()) {
	t.Helper()
	before := e.b.Health().WatchOverflows
	e.b.watchMu.Lock()
	locked := true
	defer func() {
		if locked {
			e.b.watchMu.Unlock()
		}
	}()
	for i := 0; i < 17000; i++ {
		p := filepath.Join(dir, "f"+strconv.Itoa(i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	during()
	e.b.watchMu.Unlock()
	locked = false
	// A nudge: a reader held back may have missed its poll wake-up.
	e.write(filepath.Join(dir, "nudge"), "")
	// Reading 17000 events takes seconds in an emulated VM guest.
	for deadline := time.Now().Add(2 * time.Minute); e.b.Health().WatchOverflows == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watcher's queue did not overflow, or its overflow was not read, within 2 minutes")
		}
	}
	t.Cleanup(func() {
		for i := 0; i < 17000; i++ {
			os.Remove(filepath.Join(dir, "f"+strconv.Itoa(i)))
		}
	})
}

// TestOverflowRecheck: a rename over a protected file, a truncate of one,
// and a move of a directory above a protected path, made while the
// watcher's queue is full, send no event the watcher can read. After the
// overflow every held path is checked again: the file renamed over is put
// back (event restored, rescan), the truncated one is written back and its
// sandbox killed, the moved directory kills its sandbox.
func TestOverflowRecheck(t *testing.T) {
	const content = "[core]\n\thooksPath = /safe\n"
	var cfg, hooks string
	// One backend per case: the rescan reports to every sandbox that
	// protects a path, the mover being unknown.
	mode := policy.ModeEnforce
	setup := func(t *testing.T) (*env, *sbox) {
		e := newEnv(t, nil)
		if e.b.watch == nil {
			testutil.SkipUnlessKernel(t, "no directory watcher")
		}
		cfg = e.write(filepath.Join(e.project, ".git", "config"), content)
		hooks = filepath.Join(e.project, ".git", "hooks")
		if err := os.MkdirAll(hooks, 0o755); err != nil {
			t.Fatal(err)
		}
		return e, e.sandbox(policy.Policy{DenyWrite: rules(cfg, hooks+"/"), DenyRead: rules(".env"), Mode: mode})
	}

	t.Run("rename over", func(t *testing.T) {
		e, s := setup(t)
		died := e.sleeper(t, s)
		evil := e.write(filepath.Join(e.project, "evil"), "[core]\n\tfsmonitor = /tmp/x\n")
		e.overflowDuring(t, e.project, func() {
			if got := e.run(s, "rename", evil, cfg); got != "ok" {
				t.Fatalf("rename inside: %s", got)
			}
		})
		ev := e.event()
		if ev.Op != events.OpRename || ev.Path != cfg || ev.Sandbox != s.Name || !ev.Restored || !ev.Rescan {
			t.Fatalf("event %+v, want a restored rename of %s found by the rescan", ev, cfg)
		}
		if got, err := os.ReadFile(cfg); err != nil || string(got) != content {
			t.Errorf("%s after the rescan: %q %v, want %q", cfg, got, err, content)
		}
		select {
		case <-died:
			t.Fatal("a restored rename killed the sandbox")
		case <-time.After(200 * time.Millisecond):
		}
	})
	t.Run("truncate", func(t *testing.T) {
		e, s := setup(t)
		died := e.sleeper(t, s)
		e.overflowDuring(t, e.project, func() {
			if got, release := e.held(t, s, "truncate", cfg); got != "ok" {
				t.Fatalf("truncate inside: %s", got)
			} else {
				release()
			}
		})
		ev := e.event()
		if ev.Op != events.OpTruncate || ev.Path != cfg || ev.Sandbox != s.Name || !ev.Restored || !ev.Rescan {
			t.Fatalf("event %+v, want a restored truncate of %s found by the rescan", ev, cfg)
		}
		select {
		case <-died:
		case <-time.After(5 * time.Second):
			t.Error("the sandbox was not killed")
		}
		if got, err := os.ReadFile(cfg); err != nil || string(got) != content {
			t.Errorf("%s after the rescan: %q %v, want %q", cfg, got, err, content)
		}
	})
	t.Run("directory above moved", func(t *testing.T) {
		e, s := setup(t)
		died := e.sleeper(t, s)
		away := filepath.Join(e.project, "hooks-away")
		e.overflowDuring(t, e.project, func() {
			if got := e.run(s, "rename", hooks, away); got != "ok" {
				t.Fatalf("rename inside: %s", got)
			}
		})
		ev := e.event()
		if ev.Op != events.OpRename || ev.Path != hooks || ev.Sandbox != s.Name || ev.Restored || !ev.Rescan {
			t.Fatalf("event %+v, want an unrestored rename of %s found by the rescan", ev, hooks)
		}
		select {
		case <-died:
		case <-time.After(5 * time.Second):
			t.Error("the sandbox was not killed")
		}
	})
	t.Run("the user's", func(t *testing.T) {
		// The user removed .git/hooks earlier (its event was read), and
		// edits .git/config in place while the queue is full: neither is
		// a sandbox's, and the edit is what a later restore gives back.
		e, s := setup(t)
		died := e.sleeper(t, s)
		if out, err := exec.Command("rmdir", hooks).CombinedOutput(); err != nil {
			t.Fatalf("rmdir %s outside: %v %s", hooks, err, out)
		}
		waitFor(t, "the user's rmdir read", func() bool {
			e.b.mu.RLock()
			in := e.b.sandboxes[s.ID]
			e.b.mu.RUnlock()
			in.mu.Lock()
			defer in.mu.Unlock()
			_, ok := in.plan.tree[hooks]
			return !ok
		})
		const edited = "[core]\n\tbare = false\n"
		e.overflowDuring(t, e.project, func() {
			if out, err := exec.Command("sh", "-c", `printf '%s' "$1" > "$2"`, "sh", edited, cfg).CombinedOutput(); err != nil {
				t.Fatalf("edit %s outside: %v %s", cfg, err, out)
			}
		})
		e.noEvent()
		select {
		case <-died:
			t.Fatal("the user's changes killed the sandbox")
		case <-time.After(200 * time.Millisecond):
		}
		if !e.b.keep.hasContent(cfg) {
			t.Fatal("no content held")
		}
		e.b.keep.mu.Lock()
		got := string(e.b.keep.files[cfg].data)
		e.b.keep.mu.Unlock()
		if got != edited {
			t.Errorf("content held after the rescan: %q, want the user's %q", got, edited)
		}
	})
	t.Run("audit", func(t *testing.T) {
		// An audited sandbox is told, and nothing is undone or killed.
		mode = policy.ModeAudit
		defer func() { mode = policy.ModeEnforce }()
		e, s := setup(t)
		died := e.sleeper(t, s)
		const planted = "[core]\n\tfsmonitor = /tmp/x\n"
		evil := e.write(filepath.Join(e.project, "evil"), planted)
		e.overflowDuring(t, e.project, func() {
			if got := e.run(s, "rename", evil, cfg); got != "ok" {
				t.Fatalf("rename inside: %s", got)
			}
		})
		ev := e.event()
		if ev.Op != events.OpRename || ev.Path != cfg || !ev.Audit || ev.Restored || !ev.Rescan {
			t.Fatalf("event %+v, want an audited rename of %s found by the rescan", ev, cfg)
		}
		if got, _ := os.ReadFile(cfg); string(got) != planted {
			t.Errorf("%s in audit mode: %q, want the replacement left", cfg, got)
		}
		select {
		case <-died:
			t.Fatal("an audited sandbox was killed")
		case <-time.After(200 * time.Millisecond):
		}
	})
}
