//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

var _ = registerHelper("rename-hold", func(args []string) string { // rename-hold FROM TO, then stay (holdAfter)
	return holdAfter(os.Rename(args[0], args[1]))
})

// TestUsersCanRemove: which entries a user other than root could remove
// or rename, so which directories above a deny_write path are watched.
func TestUsersCanRemove(t *testing.T) {
	const user = 1000
	for _, c := range []struct {
		name         string
		dirUID       uint32
		dirMode      uint32
		entryUID     uint32
		exists, want bool
	}{
		{"/ (root's 0755): /tmp itself", 0, 0o755, 0, true, false},
		{"root's 0700 directory", 0, 0o700, user, true, false},
		{"user's directory", user, 0o755, user, true, true},
		{"user's read-only directory (the user may chmod it)", user, 0o555, 0, true, false},
		{"root's group-writable directory", 0, 0o775, 0, true, true},
		{"sticky /tmp, user's entry", 0, 0o1777, user, true, true},
		{"sticky /tmp, root's entry (/tmp/.X11-unix)", 0, 0o1777, 0, true, false},
		{"sticky /tmp, absent entry (anyone may move one there)", 0, 0o1777, 0, false, true},
		{"sticky directory of a user's, root's entry", user, 0o1777, 0, true, true},
	} {
		ds := unix.Stat_t{Uid: c.dirUID, Mode: unix.S_IFDIR | c.dirMode}
		es := unix.Stat_t{Uid: c.entryUID, Mode: unix.S_IFREG | 0o644}
		if got := usersCanRemove(&ds, &es, c.exists); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestNamedOutsideTrees: a deny_write file outside the home and the
// project, in a directory of a user's (not walked, so not watched as a
// tree), is watched by name in its directory, and that directory by name
// itself (its own moves) when a user could rename it. A sandbox's unlink of the
// file is put back (restored) and its rename of the directory above kills
// it; every other delete there, the sandbox's own included, is dropped
// unexamined (Health.SkippedWatchEvents) and reported nowhere.
func TestNamedOutsideTrees(t *testing.T) {
	e := newEnv(t, nil)
	if e.b.watch == nil {
		testutil.SkipUnlessKernel(t, "no directory watcher")
	}
	const nobody = 65534
	// base is root's 0700 (t.TempDir): out, the user's, cannot be
	// renamed; out/sub can.
	out := filepath.Join(filepath.Dir(e.home), "out")
	file := e.write(filepath.Join(out, "file"), "kept\n")
	deep := e.write(filepath.Join(out, "sub", "deep"), "deep\n")
	for _, p := range []string{out, filepath.Join(out, "sub"), file, deep} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	s := e.sandbox(policy.Policy{DenyWrite: rules(file, deep)})
	died := e.sleeper(t, s)

	// Another process than the agent, outside every sandbox.
	skipped := e.b.Health().SkippedWatchEvents
	for i := range 20 {
		o := e.write(filepath.Join(out, fmt.Sprintf("other%d", i)), "x")
		if got, release := e.held(t, nil, "unlink", o); got != "ok" {
			t.Fatalf("unlink %s outside: %s", o, got)
		} else {
			release()
		}
	}
	// The sandbox's own delete of another name.
	o := e.write(filepath.Join(out, "mine"), "x")
	if got, release := e.held(t, s, "unlink", o); got != "ok" {
		t.Fatalf("unlink %s inside: %s", o, got)
	} else {
		release()
	}
	waitFor(t, "the other deletes skipped", func() bool { return e.b.Health().SkippedWatchEvents >= skipped+21 })
	e.noEvent()

	got, release := e.held(t, s, "unlink", file)
	if got != "ok" {
		t.Fatalf("unlink %s: %s (fanotify cannot refuse an unlink)", file, got)
	}
	ev := e.event()
	release()
	if ev.Op != events.OpDelete || ev.Path != file || ev.Sandbox != s.Name || !ev.Restored {
		t.Fatalf("event %+v, want a restored delete of %s by %s", ev, file, s.Name)
	}
	if data, err := os.ReadFile(file); err != nil || string(data) != "kept\n" {
		t.Errorf("%s after the restore: %q %v", file, data, err)
	}

	// The directory above is watched itself, not by name in out: a
	// user's directory in /tmp costs /tmp's other deleters nothing.
	sub := filepath.Join(out, "sub")
	e.b.watch.mu.Lock()
	self, byName := e.b.watch.selves[sub] != nil, e.b.watch.named[out] != nil && e.b.watch.named[out].names["sub"] > 0
	e.b.watch.mu.Unlock()
	if !self || byName {
		t.Errorf("%s watched itself: %v, by name in %s: %v; want itself only", sub, self, out, byName)
	}
	t.Cleanup(func() { os.Rename(sub+".away", sub) })
	e.held(t, s, "rename-hold", sub, sub+".away") // the kill may end it before it answers
	if _, err := os.Stat(sub + ".away"); err != nil {
		t.Fatalf("rename %s: %v", sub, err)
	}
	ev = e.event()
	if ev.Op != events.OpRename || ev.Path != sub || ev.Sandbox != s.Name || ev.Restored {
		t.Fatalf("event %+v, want an unrestored rename of %s by %s", ev, sub, s.Name)
	}
	select {
	case <-died:
	case <-time.After(5 * time.Second):
		t.Error("the sandbox was not killed")
	}
}
