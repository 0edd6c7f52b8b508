//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// newIgnored creates a file in the project after s was added, opens it
// n times from one process inside s, and checks that only the first open
// was a round trip: the decision gave the file an ignore mask
// (ignorenew.go). It returns the file's path and inode.
func (e *env) newIgnored(s *sbox, name string, n int) (string, inodeKey) {
	e.t.Helper()
	before := e.b.Health()
	// In a directory present at start: a new directory's files get
	// their masks from its walk (grow.go).
	path := e.write(filepath.Join(e.project, name), "x")
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		e.t.Fatal(err)
	}
	key := keyOf(&st)
	fd, err := s.g.OpenFD()
	if err != nil {
		e.t.Fatal(err)
	}
	defer fd.Close()
	helperNs(e.t, fd, path, n)
	after := e.b.Health()
	e.b.marks.mu.Lock()
	_, ignored := e.b.marks.ignored[key]
	e.b.marks.mu.Unlock()
	if !ignored {
		e.t.Fatalf("%s, created after the sandbox and opened inside %d times, has no ignore mask (%d decisions)", path, n, after.Decisions-before.Decisions)
	}
	// The helper's own start makes no decision (nothing it opens is in a
	// marked directory). The file's creation here, outside, may have set
	// the mask already (ignoreOutside), and the write then dropped it or
	// not: 0 or 1 decision; a few are tolerated, n are not.
	if d := after.Decisions - before.Decisions; d > 3 {
		e.t.Fatalf("%d opens inside of %s made %d decisions, want at most 1: every open after the first should skip the round trip", n, path, d)
	}
	if after.LateIgnoreMarks == before.LateIgnoreMarks {
		e.t.Fatalf("Health.LateIgnoreMarks did not count the mask on %s", path)
	}
	return path, key
}

// TestNewFileIgnoredAfterDecision: a file created in a marked directory
// after the sandbox started, opened repeatedly inside, is a round trip
// once: its first decision (unrelated to every rule) gives it the ignore
// mask the files present at start get. Without it each of the 50 opens
// was a decision.
func TestNewFileIgnoredAfterDecision(t *testing.T) {
	e := newEnv(t, nil)
	s := e.sandbox(policy.Policy{DenyRead: rules(".env", "*.key"), DenyWrite: rules("ci.yaml")})
	e.newIgnored(s, "later.go", 50)
	e.noEvent()
}

// TestNewIgnoredFileRenamedToDenied: a file that got its ignore mask
// after a decision, renamed by the user to a denied name (.env) or linked
// by the sandbox into a denied directory (secrets/), is refused when read
// inside, with an event, once the watcher has seen the rename or link:
// the mask is listed in the mark table, so protecting the inode removes
// it through its new path, as for the masks set at start
// (TestIgnoredFileRenamedToDenied). A mask set but not listed would
// silence the inode for good.
func TestNewIgnoredFileRenamedToDenied(t *testing.T) {
	e := newEnv(t, nil)
	if e.b.watch == nil {
		testutil.SkipUnlessKernel(t, "no directory watcher")
	}
	if err := os.MkdirAll(filepath.Join(e.project, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := e.sandbox(policy.Policy{DenyRead: rules(".env", "secrets")})

	cases := []struct {
		what string
		move func(from, to string) error
		to   string
	}{
		{"renamed by the user to .env", os.Rename, filepath.Join(e.project, ".env")},
		{"linked by the sandbox into secrets/", func(from, to string) error {
			if got := e.run(s, "link", from, to); got != "ok" {
				t.Fatalf("link inside %s -> %s: %s", from, to, got)
			}
			return nil
		}, filepath.Join(e.project, "secrets", "token")},
	}
	for i, c := range cases {
		from, key := e.newIgnored(s, "n"+string(rune('a'+i))+".txt", 20)
		if err := c.move(from, c.to); err != nil {
			t.Fatal(err)
		}
		waitFor(t, c.what+": protected by inode", func() bool {
			e.b.marks.mu.Lock()
			defer e.b.marks.mu.Unlock()
			return e.b.marks.protect[key] > 0
		})
		if got := e.run(s, "open", c.to, "r"); got != "EPERM" {
			t.Fatalf("%s: read inside of %s: %s, want EPERM", c.what, c.to, got)
		}
		ev := e.event()
		if ev.Kind != events.KindFile || ev.Op != events.OpRead || ev.Path != c.to {
			t.Fatalf("%s: event %+v, want a read of %s", c.what, ev, c.to)
		}
	}
}

var _ = registerHelper("link", func(args []string) string { // link FROM TO
	if err := unix.Link(args[0], args[1]); err != nil {
		return errnoName(err)
	}
	return "ok"
})

// TestNewIgnoredFileOverwrittenWithCopy: a file that got its ignore mask
// after a decision, then overwritten in place with a copy of a deny_exec
// binary, is refused when run inside: the mask is set without
// FAN_MARK_IGNORED_SURV_MODIFY, so the write drops it and the exec is
// decided (the copy check), as for the masks set at start
// (TestDenyExecCopyOverIgnored).
func TestNewIgnoredFileOverwrittenWithCopy(t *testing.T) {
	e := newEnv(t, nil)
	e.copyBin(filepath.Join(e.bin, "mytool"))
	s := e.sandbox(policy.Policy{DenyExec: rules("mytool"), DenyRead: rules(".env")})
	path, _ := e.newIgnored(s, "plain.sh", 20)
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
	// Through the dynamic loader: an open for reading, which only the
	// main group (where the mask is) reports.
	ld := interpOf(t, filepath.Join(e.bin, "mytool"))
	if got := e.run(s, "cmd", ld, path); !strings.Contains(got, "Operation not permitted") {
		t.Fatalf("sandboxed %s %s, ignored after a decision and overwritten with a copy of mytool: %q, want Operation not permitted", ld, path, got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != path {
		t.Fatalf("event %+v, want the exec of %s through the loader", ev, path)
	}
	if got := e.run(s, "exec", path); got != "EPERM" {
		t.Fatalf("sandboxed exec of %s, ignored after a decision and overwritten with a copy of mytool: %s, want EPERM", path, got)
	}
	ev := e.event()
	if ev.Kind != events.KindExec || ev.Path != path {
		t.Fatalf("event %+v, want the exec of %s", ev, path)
	}
}

// TestNewFileIgnoredOutside: a file created after the sandbox started,
// opened by a process outside every sandbox, gets the ignore mask after
// the answer (ignoreOutside): the kernel's own listing of the group's
// marks (/proc/self/fdinfo) shows it, so its later opens are no round
// trip. A file a sandbox's rule names gets none.
func TestNewFileIgnoredOutside(t *testing.T) {
	e := newEnv(t, nil)
	e.sandbox(policy.Policy{DenyRead: rules("*.key")})
	// The watcher held: until it sees later.key's creation, only the
	// path match stands between it and a mask (once seen, the inode is
	// protected and gets none either way).
	e.b.watchMu.Lock()
	plain := e.write(filepath.Join(e.project, "later.txt"), "x")
	named := e.write(filepath.Join(e.project, "later.key"), "x")
	for range 3 {
		openHere(t, plain, unix.O_RDONLY)
		openHere(t, named, unix.O_RDONLY)
	}
	e.b.watchMu.Unlock()
	if !kernelIgnores(t, e.b.group, plain) {
		t.Fatalf("%s, created after the sandbox and opened outside, has no ignore mask in the kernel", plain)
	}
	if kernelIgnores(t, e.b.group, named) {
		t.Fatalf("%s, which the sandbox's *.key names, has an ignore mask", named)
	}
}

// kernelIgnores reports whether the group's marks, as the kernel lists
// them, hold a non-empty ignore mask on path's inode.
func kernelIgnores(t *testing.T, group int, path string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", group))
	if err != nil {
		t.Fatal(err)
	}
	ino := fmt.Sprintf("ino:%x ", st.Ino)
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "fanotify "+ino) {
			continue
		}
		_, rest, ok := strings.Cut(line, " ignored_mask:")
		mask, _, _ := strings.Cut(rest, " ")
		return ok && mask != "0"
	}
	return false
}

// TestAnyCaresOtherSandbox: a file another sandbox's rule names, or of the
// size of a deny_exec binary of any sandbox, is one no late ignore mask
// may silence; the deciding sandbox's own rules were asked already.
func TestAnyCaresOtherSandbox(t *testing.T) {
	e := newEnv(t, nil)
	bin := e.copyBin(filepath.Join(e.bin, "mytool"))
	keys := e.sandbox(policy.Policy{DenyRead: rules("*.key")})
	other := e.sandbox(policy.Policy{DenyExec: rules("mytool")})
	var st unix.Stat_t
	if err := unix.Stat(bin, &st); err != nil {
		t.Fatal(err)
	}
	e.b.mu.RLock()
	ownKeys, ownOther := e.b.sandboxes[keys.ID], e.b.sandboxes[other.ID]
	e.b.mu.RUnlock()
	named := filepath.Join(e.project, "later.key")
	for _, c := range []struct {
		own  *sandbox
		path string
		size int64
		want bool
	}{
		{ownOther, named, 1, true},                                      // the other sandbox's *.key
		{ownKeys, named, 1, false},                                      // its own rule, already decided
		{ownKeys, filepath.Join(e.project, "plain.txt"), st.Size, true}, // a copy's size
		{nil, filepath.Join(e.project, "plain.txt"), 1, false},
	} {
		if got := e.b.anyCares(c.own, c.path, c.size); got != c.want {
			t.Errorf("anyCares(%v, %s, %d) = %v, want %v", c.own != nil, c.path, c.size, got, c.want)
		}
	}
}
