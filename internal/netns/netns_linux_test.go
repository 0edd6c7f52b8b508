//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestOpenIn: the socket open makes is in the namespace asked for, and
// the calling thread's namespace, and the process's, are what they were.
func TestOpenIn(t *testing.T) {
	testutil.RequireRoot(t)
	n := testutil.NewNetNS(t, fmt.Sprintf("aigate-netns-%d", os.Getpid()))
	target, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	before := inode(t, "/proc/self/ns/net")
	fd, err := OpenIn(int(target.Fd()), func() (int, error) {
		return unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ns, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ns)
	var got, want unix.Stat_t
	if err := unix.Fstat(ns, &got); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(int(target.Fd()), &want); err != nil {
		t.Fatal(err)
	}
	if got.Ino != want.Ino {
		t.Errorf("the socket is in namespace %d, want %d", got.Ino, want.Ino)
	}
	if after := inode(t, "/proc/self/ns/net"); after != before {
		t.Errorf("the process's namespace changed: %d, was %d", after, before)
	}
	if cur := inode(t, "/proc/thread-self/ns/net"); cur != before {
		t.Errorf("this thread is in namespace %d, want %d", cur, before)
	}
	// An open that fails: its error comes back, and nothing is left open.
	if _, err := OpenIn(int(target.Fd()), func() (int, error) { return -1, unix.EAFNOSUPPORT }); !errors.Is(err, unix.EAFNOSUPPORT) {
		t.Errorf("OpenIn with a failing open = %v, want EAFNOSUPPORT", err)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
