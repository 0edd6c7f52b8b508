//go:build linux

package unixdiag

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGet: the kernel names the file a listener is bound to (as stat
// does, device in its own encoding) and a connected socket's peer, and
// knows nothing of a closed socket.
func TestGet(t *testing.T) {
	name := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept() // before it, the peer is a socket without an inode
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	lino, cino := sockIno(t, ln.(*net.UnixListener)), sockIno(t, c.(*net.UnixConn))
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		t.Fatal(err)
	}

	nl, err := OpenFor(uint32(unix.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(nl)
	s, err := Get(nl, lino, ShowVFS|ShowPeer)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Bound || s.FileIno != uint32(st.Ino) || s.FileDev != KernelDev(st.Dev) || s.Peer != 0 {
		t.Errorf("listener: %+v, want bound to ino %d dev %#x, no peer", s, st.Ino, KernelDev(st.Dev))
	}
	s, err = Get(nl, cino, ShowVFS|ShowPeer)
	if err != nil {
		t.Fatal(err)
	}
	if s.Bound || s.Peer != sockIno(t, a.(*net.UnixConn)) {
		t.Errorf("client: %+v, want unbound with the accepted socket as peer", s)
	}
	c.Close()
	if _, err := Get(nl, cino, ShowVFS); !errors.Is(err, ErrNotFound) {
		t.Errorf("closed socket: %v, want ErrNotFound", err)
	}

	// A file only while its socket lives.
	if held, err := FileHeld(nl, st.Dev, st.Ino); err != nil || !held {
		t.Errorf("the listener's file: held %v, %v", held, err)
	}
	// An accepted socket shares its listener's file: close both.
	a.Close()
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if err := unix.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	if held, err := FileHeld(nl, st.Dev, st.Ino); err != nil || held {
		t.Errorf("the closed listener's file: held %v, %v", held, err)
	}
	// The socket still answers one question after a dump.
	if _, err := Get(nl, cino, ShowVFS); !errors.Is(err, ErrNotFound) {
		t.Errorf("after a dump: %v, want ErrNotFound", err)
	}
}

func sockIno(t *testing.T, c interface {
	File() (*os.File, error)
}) uint32 {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}
