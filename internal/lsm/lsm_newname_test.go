//go:build linux

package lsm

import (
	"os"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestLSMNewNames: mkdir, symlink and mknod create names without opening a
// file; in a deny_write (or deny_read) directory they are denied, as a
// symlink planted in .git/hooks would otherwise run code there.
func TestLSMNewNames(t *testing.T) {
	l := openLSM(t)
	dir := tempDir(t)
	if err := os.MkdirAll(dir+"/proj/.git/hooks", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+"/conf", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+"/ssh", 0o755); err != nil {
		t.Fatal(err)
	}
	sb := addSandbox(t, l, compiled(
		ruleSpec{policy.AccessWrite, "names", ".git"},        // 1
		ruleSpec{policy.AccessWrite, "paths", dir + "/conf"}, // 2
		ruleSpec{policy.AccessRead, "paths", dir + "/ssh"},   // 3
	), policy.ModeEnforce)

	hook := dir + "/proj/.git/hooks/pre-commit"
	expectWriteDenied(t, l, sb, hook, 1, "symlink", "/tmp/evil", hook)
	expectWriteDenied(t, l, sb, dir+"/proj/.git/x", 1, "mkdir", dir+"/proj/.git/x")
	expectWriteDenied(t, l, sb, dir+"/conf/fifo", 2, "mkfifo", dir+"/conf/fifo")
	expectWriteDenied(t, l, sb, dir+"/conf/l", 2, "symlink", "x", dir+"/conf/l")
	expectWriteDenied(t, l, sb, dir+"/ssh/d", 3, "mkdir", dir+"/ssh/d")
	noEvent(t, l)

	expectAllowed(t, sb, "mkdir", dir+"/proj/src")
	expectAllowed(t, sb, "symlink", "x", dir+"/proj/l")
	expectAllowed(t, sb, "mkfifo", dir+"/proj/fifo")
	expectAllowed(t, nil, "symlink", "/tmp/evil", hook)
	expectAllowed(t, nil, "mkdir", dir+"/conf/d")
	noEvent(t, l)
}
