//go:build linux

package lsm

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// pathHelper runs the helper actions of this file inside a sandbox:
// "mkdir P", "symlink TARGET P", "mkfifo P", and "opendeep BASE COMP N
// LEAF": chdir to BASE, then N times into COMP, then open LEAF for reading,
// so that the file's path may be longer than PATH_MAX.
func pathHelper(args []string) error {
	switch args[0] {
	case "mkdir":
		return unix.Mkdir(args[1], 0o755)
	case "symlink":
		return unix.Symlink(args[1], args[2])
	case "mkfifo":
		return unix.Mkfifo(args[1], 0o600)
	case "opendeep":
		n, _ := strconv.Atoi(args[3])
		if err := unix.Chdir(args[1]); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := unix.Chdir(args[2]); err != nil {
				return err
			}
		}
		fd, err := unix.Open(args[4], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	return nil
}

// deepTree creates base/comp/comp/.../comp (n times) with a file leaf at
// the bottom, one directory at a time (the whole path may exceed PATH_MAX).
func deepTree(t *testing.T, base, comp string, n int, leaf string) {
	t.Helper()
	fd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := unix.Mkdirat(fd, comp, 0o755); err != nil && err != unix.EEXIST {
			t.Fatalf("mkdir level %d: %v", i, err)
		}
		next, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("open level %d: %v", i, err)
		}
		fd = next
	}
	defer unix.Close(fd)
	f, err := unix.Openat(fd, leaf, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(f)
}

// expectDeniedRule runs the helper in sb and checks EPERM and a file event
// with the rule (0: the file could not be checked), whatever its path.
func expectDeniedRule(t *testing.T, l *Backend, sb *sandbox, op events.Op, rule uint32, args ...string) {
	t.Helper()
	code, pid := run(t, sb, args...)
	if code != exitEPERM {
		t.Errorf("%s: exit %d, want EPERM", strings.Join(args[:min(len(args), 2)], " "), code)
		return
	}
	ev := nextEvent(t, l)
	if ev.Kind != events.KindFile || ev.Op != op || ev.Rule != rule || int(ev.TGID) != pid {
		t.Errorf("%s: event %+v, want file %s rule %d pid %d", args[0], ev, op, rule, pid)
	}
}

// TestLSMLongPaths: a path longer than the Paths key (248 bytes) is still
// matched by its first bytes; one longer than d_path's 4096 bytes, or deeper
// than the dentry walk's bound, cannot be checked and is denied (rule 0) in
// a sandbox that has rules of that kind, instead of being let through.
func TestLSMLongPaths(t *testing.T) {
	l := openLSM(t)
	dir := tempDir(t)
	sb := addSandbox(t, l, compiled(
		ruleSpec{policy.AccessRead, "paths", dir + "/deny"}, // 1
		ruleSpec{policy.AccessRead, "names", "secrets"},     // 2
	), policy.ModeEnforce)
	// Created after Add: no inode rule, only the path and the name match.
	for _, d := range []string{"/deny", "/secrets", "/free"} {
		if err := os.Mkdir(dir+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	long := strings.Repeat("x", 200)
	deepTree(t, dir+"/deny", long, 2, "f")    // ~420 bytes
	deepTree(t, dir+"/deny", long, 21, "f")   // ~4250 bytes
	deepTree(t, dir+"/free", long, 21, "f")   // ~4250 bytes, no rule
	deepTree(t, dir+"/secrets", "d", 45, "f") // "secrets" 46 levels up
	deepTree(t, dir+"/secrets", "e", 2100, "f")
	deepTree(t, dir+"/free", "d", 60, "f")

	expectDeniedRule(t, l, sb, events.OpRead, 1, "opendeep", dir+"/deny", long, "2", "f")
	expectDeniedRule(t, l, sb, events.OpRead, 0, "opendeep", dir+"/deny", long, "21", "f")
	// Over-match: no path can be checked beyond 4096 bytes.
	expectDeniedRule(t, l, sb, events.OpRead, 0, "opendeep", dir+"/free", long, "21", "f")
	expectDeniedRule(t, l, sb, events.OpRead, 2, "opendeep", dir+"/secrets", "d", "45", "f")
	expectDeniedRule(t, l, sb, events.OpRead, 0, "opendeep", dir+"/secrets", "e", "2100", "f")
	noEvent(t, l)

	expectAllowed(t, sb, "opendeep", dir+"/free", "d", "60", "f")
	expectAllowed(t, nil, "opendeep", dir+"/deny", long, "21", "f")
	expectAllowed(t, nil, "opendeep", dir+"/secrets", "e", "2100", "f")
	noEvent(t, l)
}
