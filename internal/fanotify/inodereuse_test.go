//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

// reuseIno creates files in dir until one gets inode number ino (a number
// the filesystem freed): ext4 hands it to the next file made in the same
// block group, within a few tries. It returns the file, or "" if none got
// it (a filesystem that does not reuse numbers soon, such as tmpfs).
func reuseIno(t *testing.T, dir string, ino uint64) string {
	t.Helper()
	for i := range 2000 {
		path := filepath.Join(dir, fmt.Sprintf("new%d.txt", i))
		if err := os.WriteFile(path, []byte("unrelated"), 0o644); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		if st.Ino == ino {
			return path
		}
	}
	return ""
}

// A protected file is freed and the filesystem gives its inode number to
// a new, unrelated file: the rules by inode must not follow the number.
// The user removes a deny_read file (no copy of it is held, so nothing
// tells the backend its inode is gone); the next file made gets the number
// and a sandboxed read of it is allowed. Before the inode's identity was
// checked, it was refused under the removed file's rule (seen as `git
// submodule add` refused a template copy under the rule of .git/config).
func TestFreedInodeNumberReused(t *testing.T) {
	e := newEnv(t, nil)
	dir := filepath.Join(e.project, "conf")
	secret := e.write(filepath.Join(dir, "secret.pem"), "key")
	var st unix.Stat_t
	if err := unix.Stat(secret, &st); err != nil {
		t.Fatal(err)
	}
	s := e.sandbox(policy.Policy{DenyRead: rules("*.pem")})
	if got := e.run(s, "open", secret, "r"); got != "EPERM" {
		t.Fatalf("sandboxed read of %s: %s, want EPERM", secret, got)
	}
	e.event()
	if err := os.Remove(secret); err != nil {
		t.Fatal(err)
	}
	reused := reuseIno(t, dir, st.Ino)
	if reused == "" {
		t.Skipf("the filesystem of %s gave inode %d to none of 2000 new files", dir, st.Ino) // skip-ok: the case needs a filesystem that reuses inode numbers (ext4 does)
	}
	if got := e.run(s, "open", reused, "r"); got != "ok" {
		t.Fatalf("sandboxed read of %s, a new file with the removed %s's inode number: %s, want ok", reused, secret, got)
	}
	e.noEvent()
}
