//go:build linux

package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
)

func TestListenRefusesToReplaceANonSocket(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "passwd")
	if err := os.WriteFile(victim, []byte("root:x:0:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, _, err := Listen(victim, "no-such-group-aigate-test")
	if err == nil {
		ln.Close()
		t.Fatal("Listen replaced a regular file with its socket")
	}
	if !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("error %v does not say why", err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "root:x:0:0\n" {
		t.Errorf("victim now %q, %v", b, err)
	}
}

func TestListenLeavesAnExistingDirectoryMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, _, err := Listen(filepath.Join(dir, "s"), "no-such-group-aigate-test")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("existing directory chmodded to %s", fi.Mode().Perm())
	}
	// A second agent after this one replaces the dead socket: still fine.
	ln.Close()
	ln2, _, err := Listen(filepath.Join(dir, "s"), "no-such-group-aigate-test")
	if err != nil {
		t.Fatalf("relisten: %v", err)
	}
	ln2.Close()
}

func TestListenRefusesAWorldWritableDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if ln, _, err := Listen(filepath.Join(dir, "s"), "no-such-group-aigate-test"); err == nil {
		ln.Close()
		t.Fatal("Listen used a world-writable directory")
	}
}

// TestListenRefusesADirectoryOfAnotherUser: the owner of the socket's
// directory could rename the agent's socket away and put their own in its
// place, which every client would then trust. The agent (root) refuses a
// directory that is not root's; nothing is left in it.
func TestListenRefusesADirectoryOfAnotherUser(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "theirs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const uid = 4242 // any uid but root's
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	ln, _, err := Listen(filepath.Join(dir, "s"), "no-such-group-aigate-test")
	if err == nil {
		ln.Close()
		t.Fatal("Listen used a directory that belongs to another user")
	}
	if !strings.Contains(err.Error(), "belongs to uid 4242") {
		t.Errorf("error %v does not say why", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("Listen left %v in the refused directory", left)
	}
}
