//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestKeeperRestore: the held copy comes back over a replacement (a
// symlink planted at the path is replaced, not followed), with the mode it
// had; writes in place before the replacement are kept; past the bound
// nothing is held.
func TestKeeperRestore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	if err := os.WriteFile(path, []byte("orig\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	k := newKeeper(1)
	defer k.close()
	if !k.hold(path) {
		t.Fatal("not held")
	}
	if k.hold(filepath.Join(dir, "other")) {
		t.Fatal("held past the bound")
	}
	// The user's write in place reaches the held inode.
	if err := os.WriteFile(path, []byte("user\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("victim\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	old, err := k.restore(dfd, "config", path)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(old)
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 {
		t.Fatalf("restored: %v %v", fi.Mode(), err)
	}
	if got, _ := os.ReadFile(path); string(got) != "user\n" {
		t.Fatalf("restored content %q", got)
	}
	if got, _ := os.ReadFile(victim); string(got) != "victim\n" {
		t.Fatalf("the symlink was followed: %q", got)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("left behind: %v", ents)
	}
	// A directory in the way: the restore fails (the caller kills).
	os.Remove(path)
	os.Mkdir(path, 0o755)
	if _, err := k.restore(dfd, "config", path); err == nil {
		t.Fatal("restored over a directory")
	}
}
