//go:build linux

package fanotify

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
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

// TestKeeperDiskCopy: a file too large for memory is copied into the keep
// directory as a file with no name (nothing listed there), and a restore
// after the held inode was truncated writes the whole content back. Past
// the disk bound there is no copy, and the keeper says why.
func TestKeeperDiskCopy(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	keepDir := filepath.Join(t.TempDir(), "keep")
	content := make([]byte, 1<<20)
	for i := range content {
		content[i] = byte(i*7 + i>>10)
	}
	path := filepath.Join(dir, "big")
	if err := os.WriteFile(path, content, 0o640); err != nil {
		t.Fatal(err)
	}
	k := newKeeper(10)
	defer k.close()
	if err := k.useDir(keepDir); err != nil {
		t.Fatal(err)
	}
	if !k.hold(path) || !k.hasContent(path) {
		t.Fatalf("held without a copy of its content: %s", k.whyNoContent(path))
	}
	if ents, _ := os.ReadDir(keepDir); len(ents) != 0 {
		t.Fatalf("the keep directory lists %v, want nothing (unnamed copies)", ents)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	old, err := k.restore(dfd, "big", path)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(old)
	if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
		t.Fatalf("restored %d bytes, want the %d held", len(got), len(content))
	}

	// Past the per-file bound, then past the total: no copy, and why.
	k.diskFile = 1 << 19
	k.resnap(path)
	if k.hasContent(path) || !strings.Contains(k.whyNoContent(path), "bound") {
		t.Fatalf("past the file bound: content %v, why %q", k.hasContent(path), k.whyNoContent(path))
	}
	k.diskFile, k.diskMax = 2<<20, 1<<19
	k.resnap(path)
	if k.hasContent(path) || k.diskUsed != 0 {
		t.Fatalf("past the total: content %v, %d bytes used", k.hasContent(path), k.diskUsed)
	}
	k.diskMax = 2 << 20
	k.resnap(path)
	if !k.hasContent(path) || k.diskUsed != 1<<20 {
		t.Fatalf("within bounds again: content %v, %d bytes used", k.hasContent(path), k.diskUsed)
	}
	k.release(path)
	if k.diskUsed != 0 {
		t.Fatalf("released: %d bytes still counted", k.diskUsed)
	}
}

// TestKeeperDirRefused: a keep directory others can write or list is not
// used (its copies could be replaced or read).
func TestKeeperDirRefused(t *testing.T) {
	testutil.RequireRoot(t)
	keepDir := t.TempDir()
	if err := os.Chmod(keepDir, 0o755); err != nil {
		t.Fatal(err)
	}
	k := newKeeper(10)
	defer k.close()
	if err := k.useDir(keepDir); err == nil || k.dir >= 0 {
		t.Fatalf("mode 0755 accepted: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if err := k.useDir(link); err == nil || k.dir >= 0 {
		t.Fatalf("a symlink accepted: %v", err)
	}
}

// TestKeeperDirParents: the keep directory is made 0700, its missing
// parents 0755: /var/lib/aigate also holds the trust records that users
// read, and the escape suite's homes in a guest without /var/lib live
// beneath /var/lib (made 0700 by the keep directory, the users could not
// reach them).
func TestKeeperDirParents(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "lib", "aigate", "keep")
	k := newKeeper(10)
	defer k.close()
	if err := k.useDir(dir); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Dir(dir): 0o755, filepath.Join(base, "lib"): 0o755} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", p, got, want)
		}
	}
	if err := k.useDir(dir); err != nil { // made already: used again
		t.Errorf("the existing keep directory refused: %v", err)
	}
}

// TestKeeperDirRemoved: the keep directory removed while the keeper runs
// (`aigate reset --force` removes /var/lib/aigate, under a running agent
// too) is made and opened again at the next copy: a large protected file
// held afterwards still has its content kept, so a truncate of it can be
// undone. Before, every copy failed in the deleted directory (ENOENT),
// and a truncated file was lost (seen in CI, where the e2e setup test's
// reset ran beside the escape suite's agent).
func TestKeeperDirRemoved(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	parent := filepath.Join(t.TempDir(), "state")
	keepDir := filepath.Join(parent, "keep")
	path := filepath.Join(dir, "big")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o640); err != nil {
		t.Fatal(err)
	}
	k := newKeeper(10)
	defer k.close()
	if err := k.useDir(keepDir); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(parent); err != nil {
		t.Fatal(err)
	}
	if !k.hold(path) || !k.hasContent(path) {
		t.Fatalf("held without a copy of its content after the keep directory was removed: %s", k.whyNoContent(path))
	}
	if fi, err := os.Stat(keepDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the keep directory was not made again with mode 0700: %v %v", fi, err)
	}
}
