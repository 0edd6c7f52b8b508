//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// ignoreNow asks for dir's ignore mark at once (what learn does in the
// background) and reports whether dir has one.
func ignoreNow(e *env, dir string) bool {
	f := e.b.fsexec
	f.ignoreDir(dir)
	return f.ignores(dir)
}

// waitIgnores waits up to 5s for dir's ignore mark to be want.
func waitIgnores(t *testing.T, e *env, dir string, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.b.fsexec.ignores(dir) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: ignore mark %v after 5s, want %v", dir, !want, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deniedTool writes the deny_exec binary mytool on the sandboxes' PATH:
// a copy of true with one byte more, so that true is no copy of it.
func deniedTool(e *env) string {
	e.t.Helper()
	denied := e.copyBin(filepath.Join(e.bin, "mytool"))
	if err := appendByte(denied); err != nil {
		e.t.Fatal(err)
	}
	return denied
}

// TestExecIgnoreRootOnlyDir: while a sandbox with deny_exec binaries
// lives, the execs of programs in a directory only root can write are not
// reported at all once an exec from it was (they were a round trip to the
// agent each, issue #15), while those in a directory others can write are,
// each time. The denied binary itself, in a root-only directory of the
// PATH ignored from the start, is still refused with an event (the first
// group's inode mark), and the ignored program runs inside. Without the
// ignore marks the three execs of prog were three events.
func TestExecIgnoreRootOnlyDir(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	e := newEnv(t, func(o *Options) {
		o.onExecEvent = func(path string) {
			mu.Lock()
			seen[path]++
			mu.Unlock()
		}
	})
	base := filepath.Dir(e.home)
	sys := filepath.Join(base, "sys")
	prog := e.copyBin(filepath.Join(sys, "prog"))
	open := filepath.Join(base, "open")
	oprog := e.copyBin(filepath.Join(open, "prog"))
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	denied := deniedTool(e)
	s := e.sandboxUID(policy.Policy{DenyExec: rules("mytool")}, 1000)
	waitIgnores(t, e, e.bin, true) // a PATH directory: asked for at the start

	if got := e.run(nil, "exec", prog); got != "ok" {
		t.Fatalf("exec of %s outside: %s", prog, got)
	}
	waitIgnores(t, e, sys, true) // learned from that exec
	if got := e.run(nil, "exec", oprog); got != "ok" {
		t.Fatalf("exec of %s outside: %s", oprog, got)
	}
	if e.b.fsexec.ignores(open) {
		t.Fatalf("%s (mode 0777) got an ignore mark", open)
	}
	mu.Lock()
	clear(seen)
	mu.Unlock()
	for range 3 {
		for _, p := range []string{prog, oprog} {
			if got := e.run(nil, "exec", p); got != "ok" {
				t.Fatalf("exec of %s outside: %s", p, got)
			}
		}
	}
	mu.Lock()
	n, on := seen[prog], seen[oprog]
	mu.Unlock()
	if n != 0 {
		t.Errorf("execs of %s in a root-only directory reported %d times, want 0", prog, n)
	}
	if on != 3 {
		t.Errorf("execs of %s in a directory anyone can write reported %d times, want 3", oprog, on)
	}

	if got := e.run(s, "exec", denied); got != "EPERM" {
		t.Errorf("sandboxed exec of the denied binary in an ignored directory: %s, want EPERM", got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != denied || ruleText(s, ev) != "mytool" {
		t.Errorf("event %+v, want exec of %s by rule mytool", ev, denied)
	}
	if got := e.run(s, "exec", prog); got != "ok" {
		t.Errorf("sandboxed exec of %s: %s", prog, got)
	}
	e.noEvent()
	mu.Lock()
	n = seen[prog]
	mu.Unlock()
	if n != 0 {
		t.Errorf("the sandboxed exec of %s was reported %d times, want 0 (ignored inside too)", prog, n)
	}
}

// TestExecIgnoreFollowsChanges: a change that could let a user put a copy
// in an ignored directory takes its ignore mark away (inotify): the
// directory made writable by others, a file there given to a user or made
// writable by its group, a new file. A copy of the denied binary that root
// puts there is then refused inside with an event, and the directory is
// not ignored again while the copy is there.
func TestExecIgnoreFollowsChanges(t *testing.T) {
	e := newEnv(t, nil)
	sys := filepath.Join(filepath.Dir(e.home), "sys")
	prog := e.copyBin(filepath.Join(sys, "prog"))
	denied := deniedTool(e)
	s := e.sandboxUID(policy.Policy{DenyExec: rules("mytool")}, 1000)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name     string
		do, undo func() error
	}{
		{"directory made writable by others", func() error { return os.Chmod(sys, 0o757) }, func() error { return os.Chmod(sys, 0o755) }},
		{"file given to a user", func() error { return os.Chown(prog, 1000, 1000) }, func() error { return os.Chown(prog, 0, 0) }},
		{"file made writable by its group", func() error { return os.Chmod(prog, 0o775) }, func() error { return os.Chmod(prog, 0o755) }},
		{"new file", func() error { return os.WriteFile(filepath.Join(sys, "new"), []byte("x"), 0o644) },
			func() error { return os.Remove(filepath.Join(sys, "new")) }},
	} {
		if !ignoreNow(e, sys) {
			t.Fatalf("%s: no ignore mark before the change", c.name)
		}
		must(c.do())
		waitIgnores(t, e, sys, false)
		must(c.undo())
	}

	if !ignoreNow(e, sys) {
		t.Fatal("no ignore mark before the copy")
	}
	data, err := os.ReadFile(denied)
	must(err)
	cp := filepath.Join(sys, "renamed")
	must(os.WriteFile(cp, data, 0o755))
	waitIgnores(t, e, sys, false)
	if got := e.run(s, "exec", cp); got != "EPERM" {
		t.Fatalf("sandboxed exec of a copy root put in a formerly ignored directory: %s, want EPERM", got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != cp || ruleText(s, ev) != "mytool" {
		t.Errorf("event %+v, want exec of %s by rule mytool", ev, cp)
	}
	if ignoreNow(e, sys) {
		t.Error("a directory holding a copy of a denied binary got an ignore mark")
	}
}

// TestExecIgnoreQualifies: which directories get an ignore mark (rootOnly,
// readDir, execIgnorable), and that a sandbox added later takes away the
// marks of directories holding what it denies, and a root sandbox all of
// them.
func TestExecIgnoreQualifies(t *testing.T) {
	e := newEnv(t, nil)
	base := filepath.Dir(e.home)
	denied := deniedTool(e)
	data, err := os.ReadFile(denied)
	if err != nil {
		t.Fatal(err)
	}
	e.sandboxUID(policy.Policy{DenyExec: rules("mytool")}, 1000)
	user := e.write(filepath.Join(base, "userfile"), "u")
	if err := os.Chown(user, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	dir := func(name string, mode os.FileMode, uid int) string {
		d := filepath.Join(base, name)
		e.copyBin(filepath.Join(d, "prog"))
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
		return d
	}
	good := dir("good", 0o755, 0)
	if err := os.Symlink(user, filepath.Join(good, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(good, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(good, "sub"), 0o777); err != nil {
		t.Fatal(err)
	}
	userFile := dir("userfile-dir", 0o755, 0)
	if err := os.Chown(filepath.Join(userFile, "prog"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	groupFile := dir("groupfile-dir", 0o755, 0)
	if err := os.Chmod(filepath.Join(groupFile, "prog"), 0o775); err != nil {
		t.Fatal(err)
	}
	named := dir("named", 0o755, 0)
	e.copyBin(filepath.Join(named, "mytool")) // not the PATH's: no inode mark
	sized := dir("sized", 0o755, 0)
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(filepath.Join(sized, "other"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dir string
		want      bool
	}{
		{"root's, root's files, a link to a user's file, an open subdirectory", good, true},
		{"a user's directory", dir("users", 0o755, 1000), false},
		{"writable by its group", dir("group", 0o775, 0), false},
		{"writable by others, sticky", dir("sticky", 0o1777, 0), false},
		{"a user's file", userFile, false},
		{"a file writable by its group", groupFile, false},
		{"a file a sandbox's exec rule names", named, false},
		{"a file of a denied binary's size", sized, false},
		{"the denied binary itself (protected by inode)", e.bin, true},
	} {
		if got := ignoreNow(e, c.dir); got != c.want {
			t.Errorf("%s (%s): ignored %v, want %v", c.name, c.dir, got, c.want)
		}
	}

	// A sandbox whose exec rule names a file of an ignored directory (not
	// on its PATH: no inode mark of its own) takes its mark away before
	// it runs.
	later := dir("later", 0o755, 0)
	e.copyBin(filepath.Join(later, "latertool"))
	if !ignoreNow(e, later) {
		t.Fatal("later: no ignore mark")
	}
	e.sandboxUID(policy.Policy{DenyExec: rules("latertool")}, 1000)
	if e.b.fsexec.ignores(later) {
		t.Error("a sandbox denying a file of an ignored directory left its ignore mark")
	}
	// A root sandbox writes root's directories: no ignore marks.
	e.sandboxUID(policy.Policy{}, 0)
	if e.b.fsexec.ignores(good) || ignoreNow(e, good) {
		t.Error("an ignore mark while a root sandbox lives")
	}
}

// TestAuditExecReportedOnce: an exec both groups report (a copy directly
// in /tmp, marked by directory in the first group and by filesystem in the
// exec group; the denied binary itself in a user's directory, by inode and
// by filesystem) is one audit event, not two: in audit mode nothing is
// refused, so the kernel asks both groups. Without firstGroupReports each
// was reported twice.
func TestAuditExecReportedOnce(t *testing.T) {
	e := newEnv(t, nil)
	denied := deniedTool(e)
	if err := os.Chmod(e.bin, 0o777); err != nil { // a user's: not ignored
		t.Fatal(err)
	}
	data, err := os.ReadFile(denied)
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp("/tmp", "aigate-audit-once-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	cp := filepath.Join("/tmp", filepath.Base(tmp)+"-copy")
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cp) })
	s := e.sandboxUID(policy.Policy{DenyExec: rules("mytool"), Mode: policy.ModeAudit}, 1000)
	for _, p := range []string{cp, denied} {
		if got := e.run(s, "exec", p); got != "ok" {
			t.Fatalf("audited exec of %s: %s, want ok", p, got)
		}
		if ev := e.event(); ev.Kind != events.KindExec || ev.Path != p || !ev.Audit || ruleText(s, ev) != "mytool" {
			t.Errorf("event %+v, want an audited exec of %s by rule mytool", ev, p)
		}
		e.noEvent()
	}
}
