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
	// The user's write in place reaches the held inode, and the snapshot
	// of its content once the watcher reads its FAN_MODIFY (resnap).
	if err := os.WriteFile(path, []byte("user\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	k.resnap(path)
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

// TestKeeperSnapshotBudget: content is copied only for files within the
// per-file bound and while the total stays within its bound; releasing a
// file gives its share back.
func TestKeeperSnapshotBudget(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k := newKeeper(10)
	defer k.close()
	k.snapFile, k.snapMax = 100, 150
	a, b, big := write("a", 100), write("b", 60), write("big", 101)
	for _, p := range []string{a, b, big} {
		if !k.hold(p) {
			t.Fatalf("%s not held", p)
		}
	}
	if !k.hasContent(a) || k.hasContent(b) || k.hasContent(big) {
		t.Fatalf("content held: a %v, b %v (past the total), big %v (past the file bound)", k.hasContent(a), k.hasContent(b), k.hasContent(big))
	}
	k.release(a)
	k.resnap(b)
	if !k.hasContent(b) || k.snapUsed != 60 {
		t.Fatalf("after a's release: b has content %v, %d bytes used", k.hasContent(b), k.snapUsed)
	}
}
