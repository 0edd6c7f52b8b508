//go:build linux

package usersock

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFind: the sockets of the user at the depths asked, none deeper,
// directly in a place only where it says so, no regular files, not
// through a symbolic link.
func TestFind(t *testing.T) {
	root := t.TempDir()
	uid := os.Getuid()
	listen := func(p string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return p
	}
	listen(filepath.Join(root, "tmp", "top.sock")) // directly in a temp directory: not kept (Places)
	tmux := listen(filepath.Join(root, "tmp", "tmux-1", "default"))
	listen(filepath.Join(root, "tmp", "a", "b", "too-deep"))
	gpg := listen(filepath.Join(root, "run", "gnupg", "d.x", "S.gpg-agent"))
	if err := os.WriteFile(filepath.Join(root, "tmp", "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "run"), filepath.Join(root, "tmp", "link")); err != nil {
		t.Fatal(err)
	}
	runTop := listen(filepath.Join(root, "run", "bus"))
	got, more := Find(uid, []Place{{Dir: filepath.Join(root, "tmp"), Depth: 2}, {Dir: filepath.Join(root, "run"), Depth: 3, Top: true}})
	want := []string{gpg, runTop, tmux}
	slices.Sort(want)
	if !slices.Equal(got, want) || more {
		t.Errorf("Find = %v (more %t), want %v", got, more, want)
	}
	// Another user's sockets are not the user's.
	if got, _ := Find(uid+1, []Place{{Dir: filepath.Join(root, "tmp"), Depth: 2, Top: true}}); len(got) != 0 {
		t.Errorf("Find for another uid = %v, want none", got)
	}
}

// TestFindStatsOnlyWhatItEnters: the directories at the last level of a
// place are not stat'ed (the walk would not enter them); a run pays one
// lstat per directory of the user's in the temp directories, not one per
// directory inside them.
func TestFindStatsOnlyWhatItEnters(t *testing.T) {
	root := t.TempDir()
	for i := range 50 {
		if err := os.MkdirAll(filepath.Join(root, "tmp", "go-build1", strconv.Itoa(i)), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var stats []string
	orig := statAt
	statAt = func(fd int, dir, name string, st *unix.Stat_t) error {
		stats = append(stats, filepath.Join(dir, name))
		return orig(fd, dir, name, st)
	}
	t.Cleanup(func() { statAt = orig })
	Find(os.Getuid(), []Place{{Dir: filepath.Join(root, "tmp"), Depth: 2}})
	if want := []string{filepath.Join(root, "tmp", "go-build1")}; !slices.Equal(stats, want) {
		t.Errorf("stat'ed %d paths %v, want %v", len(stats), stats, want)
	}
}

// TestFindLargeDirectory: a directory whose listing takes several reads
// of the walk's buffer is read to its end; every socket among its
// thousands of files is found, none of them.
func TestFindLargeDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "tmp", "tmux-1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 3000 {
		p := filepath.Join(dir, fmt.Sprintf("entry-with-a-rather-long-name-%04d", i))
		if i%100 == 7 {
			if err := syscall.Mknod(p, syscall.S_IFSOCK|0o600, 0); err != nil {
				t.Fatal(err)
			}
			want = append(want, p)
			continue
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, more := Find(os.Getuid(), []Place{{Dir: filepath.Join(root, "tmp"), Depth: 2}})
	if !slices.Equal(got, want) || more {
		t.Errorf("Find = %d sockets %v (more %t), want the %d of %v", len(got), got, more, len(want), want)
	}
}
