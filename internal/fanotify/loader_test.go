//go:build linux

package fanotify

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
	"golang.org/x/sys/unix"
)

// "cmd PROG ARGS...": run a program, print "ok" or "exit N: its stderr".
var _ = registerHelper("cmd", func(args []string) string {
	var stderr bytes.Buffer
	c := exec.Command(args[0], args[1:]...)
	c.Stderr = &stderr
	err := c.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ee):
		return "exit " + strconv.Itoa(ee.ExitCode()) + ": " + strings.TrimSpace(stderr.String())
	}
	return errnoName(err)
})

// interpOf returns the loader that runs path, from its PT_INTERP.
func interpOf(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ld := ptInterp(f)
	if ld == "" {
		testutil.SkipUnlessKernel(t, path+" is statically linked: there is no dynamic loader to run it through")
	}
	return ld
}

func TestPtInterp(t *testing.T) {
	if ld := ptInterp(strings.NewReader("#!/bin/sh\necho not elf\n")); ld != "" {
		t.Fatalf("script: interpreter %q, want none", ld)
	}
	f, err := os.Open("/bin/sh")
	if err != nil {
		testutil.SkipUnlessKernel(t, "no /bin/sh")
	}
	defer f.Close()
	ld := ptInterp(f)
	if ld == "" {
		testutil.SkipUnlessKernel(t, "/bin/sh is statically linked")
	}
	if !filepath.IsAbs(ld) || !strings.Contains(filepath.Base(ld), "ld") {
		t.Fatalf("/bin/sh interpreter %q: not a loader path", ld)
	}
	if _, err := os.Stat(ld); err != nil {
		t.Fatalf("/bin/sh interpreter: %v", err)
	}
}

// TestDenyExecThroughLoader: running a deny_exec binary as an argument of
// the dynamic loader (no exec of the binary) is refused inside the sandbox,
// also through a hard link and a copy of the loader, and reported as an
// exec; other readers of the binary, and everything outside, are allowed.
func TestDenyExecThroughLoader(t *testing.T) {
	e := newEnv(t, nil)
	bin := e.copyBin(filepath.Join(e.bin, "mytool"))
	ld := interpOf(t, bin)
	other := e.write(filepath.Join(e.project, "notes.txt"), "hello")
	s := e.sandbox(policy.Policy{DenyExec: rules("mytool")})

	// A hard link (another name, the same inode) and a copy of the loader.
	dir := t.TempDir()
	link := filepath.Join(dir, "innocent-ld")
	realLd, err := filepath.EvalSymlinks(ld)
	if err != nil {
		t.Fatal(err)
	}
	loaders := []string{ld}
	if err := os.Link(realLd, link); err == nil {
		loaders = append(loaders, link)
	} else if !errors.Is(err, unix.EXDEV) {
		t.Fatal(err)
	} else {
		t.Logf("hard link of %s: %v (not tried)", realLd, err)
	}
	data, err := os.ReadFile(realLd)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "my-copy-of-ld")
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	loaders = append(loaders, cp)

	for _, l := range loaders {
		got := e.run(s, "cmd", l, bin)
		if !strings.Contains(got, "Operation not permitted") {
			t.Errorf("sandboxed %s %s: %q, want Operation not permitted", l, bin, got)
			continue
		}
		ev := e.event()
		if ev.Kind != events.KindExec || ev.Op != events.OpExec || ev.Path != bin || ev.Rule != 1 ||
			ruleText(s, ev) != "mytool" || ev.CgroupID != s.CgroupID || ev.Audit || ev.PID == 0 {
			t.Errorf("%s: event %+v, want exec of %s by rule 1 (mytool)", l, ev, bin)
		}
		if got := e.run(nil, "cmd", l, bin); got != "ok" {
			t.Errorf("%s %s outside the sandbox: %q", l, bin, got)
		}
	}
	// Reading the binary is allowed to everything but a loader.
	for _, c := range [][]string{{"cat", bin}, {"cp", bin, filepath.Join(dir, "copy")}} {
		if got := e.run(s, "cmd", c...); got != "ok" {
			t.Errorf("sandboxed %v: %q, want ok", c, got)
		}
	}
	if got := e.run(s, "open", bin, "r"); got != "ok" {
		t.Errorf("sandboxed read of %s: %s", bin, got)
	}
	// The loader itself still runs other programs, and they read what
	// they like.
	if got := e.run(s, "cmd", ld, "/bin/cat", other); got != "ok" {
		t.Errorf("sandboxed %s /bin/cat %s: %q", ld, other, got)
	}
	e.noEvent()
	if n := e.count(events.KindExec, events.OpExec, false); n != uint64(len(loaders)) {
		t.Fatalf("exec counter %d, want %d", n, len(loaders))
	}
}

// TestLoaderAuditOneEvent: in audit mode each run is reported once. A shell
// started through the loader that execs the binary is an exec (reported by
// FAN_OPEN_EXEC_PERM) whose open is then reported by FAN_OPEN_PERM with a
// loader as the process's exe: that open must not count twice.
func TestLoaderAuditOneEvent(t *testing.T) {
	e := newEnv(t, nil)
	bin := e.copyBin(filepath.Join(e.bin, "mytool"))
	ld := interpOf(t, bin)
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		testutil.SkipUnlessKernel(t, "no /bin/sh")
	}
	s := e.sandbox(policy.Policy{DenyExec: rules("mytool"), Mode: policy.ModeAudit})
	for _, c := range [][]string{{ld, bin}, {ld, sh, "-c", bin}} {
		if got := e.run(s, "cmd", c...); got != "ok" {
			t.Errorf("audit-mode %v: %q, want ok", c, got)
			continue
		}
		if ev := e.event(); ev.Kind != events.KindExec || ev.Path != bin || !ev.Audit {
			t.Errorf("%v: event %+v, want an audit exec of %s", c, ev, bin)
		}
		e.noEvent()
	}
	if n := e.count(events.KindExec, events.OpExec, true); n != 2 {
		t.Fatalf("audit exec counter %d, want 2", n)
	}
}

// TestLoaderNewBinaryByName: a binary matching an exec name rule, written
// after the sandbox started into a directory that read name rules mark, is
// found by its path when a loader opens it.
func TestLoaderNewBinaryByName(t *testing.T) {
	e := newEnv(t, nil)
	s := e.sandbox(policy.Policy{DenyRead: rules(".env"), DenyExec: rules("mytool")})
	bin := e.copyBin(filepath.Join(e.project, "mytool")) // no inode mark: the directory reports it
	ld := interpOf(t, bin)
	if got := e.run(s, "cmd", ld, bin); !strings.Contains(got, "Operation not permitted") {
		t.Fatalf("sandboxed %s %s: %q, want Operation not permitted", ld, bin, got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != bin || ruleText(s, ev) != "mytool" {
		t.Fatalf("event %+v, want exec of %s by rule mytool", ev, bin)
	}
	if got := e.run(s, "cmd", "cat", bin); got != "ok" {
		t.Fatalf("sandboxed cat %s: %q", bin, got)
	}
	e.noEvent()
}

// TestLoaderDecidedInline: the reader decides the opens of a deny_exec
// binary itself once the binary's interpreter is known (learnt when the
// sandbox is added): a read by cat or by the test helper is allowed and
// the loader's open refused, none handed to a worker. A copy of the
// loader (an exe the size of a loader: a hash) still goes to a worker,
// and is refused there.
func TestLoaderDecidedInline(t *testing.T) {
	var workers atomic.Int32
	e := newEnv(t, func(o *Options) { o.beforeDecide = func(*pending) { workers.Add(1) } })
	bin := e.copyBin(filepath.Join(e.bin, "mytool"))
	ld := interpOf(t, bin)
	s := e.sandbox(policy.Policy{DenyExec: rules("mytool")})
	for range 3 {
		if got := e.run(s, "open", bin, "r"); got != "ok" {
			t.Fatalf("sandboxed read of %s: %s, want ok", bin, got)
		}
	}
	if got := e.run(s, "cmd", "cat", bin); got != "ok" {
		t.Fatalf("sandboxed cat %s: %q, want ok", bin, got)
	}
	if got := e.run(s, "cmd", ld, bin); !strings.Contains(got, "Operation not permitted") {
		t.Fatalf("sandboxed %s %s: %q, want Operation not permitted", ld, bin, got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != bin {
		t.Fatalf("event %+v, want exec of %s", ev, bin)
	}
	if n := workers.Load(); n != 0 {
		t.Fatalf("%d of the opens of %s were handed to a worker, want none", n, bin)
	}
	realLd, err := filepath.EvalSymlinks(ld)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(realLd)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "my-copy-of-ld")
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := e.run(s, "cmd", cp, bin); !strings.Contains(got, "Operation not permitted") {
		t.Fatalf("sandboxed %s %s: %q, want Operation not permitted", cp, bin, got)
	}
	e.event()
	if n := workers.Load(); n == 0 {
		t.Fatalf("the open of %s by a copy of the loader was decided inline, want a worker's hash", bin)
	}
	e.noEvent()
}
