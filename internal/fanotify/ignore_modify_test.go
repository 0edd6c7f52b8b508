//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestDenyExecCopyOverIgnored: an unrelated file that got an ignore mask
// at start, overwritten in place with a copy of a deny_exec binary, is
// refused when run inside: a write must not leave the ignore mask, which
// would skip the copy check.
func TestDenyExecCopyOverIgnored(t *testing.T) {
	e := newEnv(t, nil)
	e.copyBin(filepath.Join(e.bin, "mytool"))
	plain := e.write(filepath.Join(e.project, "sub", "plain.sh"), "#!/bin/sh\nexit 0\n")
	// A name rule, as the defaults have: the trees are marked for opens,
	// so the loader's open of the copy below is reported.
	s := e.sandbox(policy.Policy{DenyExec: rules("mytool"), DenyRead: rules(".env")})
	var st unix.Stat_t
	if err := unix.Stat(plain, &st); err != nil {
		t.Fatal(err)
	}
	e.b.marks.mu.Lock()
	_, ignored := e.b.marks.ignored[keyOf(&st)]
	e.b.marks.mu.Unlock()
	if !ignored {
		t.Fatalf("%s has no ignore mask: the test needs one", plain)
	}
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	// In place: the same inode, now a copy of the denied binary.
	if err := os.WriteFile(plain, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	// Through the dynamic loader first: its open for reading reaches the
	// main group only (the filesystem exec marks are in a group of their
	// own, execignore.go), where a mask that survived the write would
	// silence the copy check.
	ld := interpOf(t, filepath.Join(e.bin, "mytool"))
	if got := e.run(s, "cmd", ld, plain); !strings.Contains(got, "Operation not permitted") {
		t.Fatalf("sandboxed %s %s, an ignored file overwritten with a copy of mytool: %q, want Operation not permitted", ld, plain, got)
	}
	if got := e.run(s, "exec", plain); got != "EPERM" {
		t.Fatalf("sandboxed exec of %s, an ignored file overwritten with a copy of mytool: %s, want EPERM", plain, got)
	}
}
