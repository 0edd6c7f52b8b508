//go:build linux

package api

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/unixdiag"
)

// Before Linux 6.5 the socket names its peer only by pid, and the pid may
// have been handed to another process between the peer's connect and the
// agent's accept. What an impostor cannot fake is holding the other end
// of the connection: the agent asks the kernel which socket that is
// (sock_diag, UNIX_DIAG_PEER) and looks for it among the pid's open files.
// A process outside that holds it was given it by a sandboxed one, which
// needs its cooperation: such a process can do what it likes anyway.

// noPeerPidfdEnv, set to 1, makes PeerOf act as on a kernel without
// SO_PEERPIDFD. Only tests set it, so that hosts with Linux 6.5 or later
// run the older kernels' path too.
const noPeerPidfdEnv = "AIGATE_TEST_NO_PEERPIDFD"

// holdsConn says whether process pid holds the other end of the connected
// unix socket fd: nil if it does, an error wrapping ErrPeerGone if not.
// The caller has a pidfd of pid open, and checks it after holdsConn
// returns: only then does what was read under /proc/PID belong to it.
func holdsConn(fd, pid int) error {
	ino, err := peerInode(fd)
	if err != nil {
		hint := ""
		if errors.Is(err, unix.ENOENT) {
			hint = " (without SO_PEERPIDFD, before Linux 6.5, the agent needs the kernel's unix_diag: modprobe unix_diag)"
		}
		return fmt.Errorf("pid %d: find the client's end of the connection%s: %w", pid, hint, err)
	}
	if ino == 0 {
		// The client's end is closed: no one holds it.
		return fmt.Errorf("pid %d: %w", pid, ErrPeerGone)
	}
	link := "socket:[" + strconv.FormatUint(uint64(ino), 10) + "]"
	// The fd table of the thread group leader first; a thread may have
	// its own (clone without CLONE_FILES), so the others' after.
	dirs := []string{fmt.Sprintf("/proc/%d/fd", pid)}
	if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		for _, t := range tasks {
			if t.Name() != strconv.Itoa(pid) {
				dirs = append(dirs, fmt.Sprintf("/proc/%d/task/%s/fd", pid, t.Name()))
			}
		}
	}
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // the thread is gone, or the process: Verify says which
		}
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == link {
				return nil
			}
		}
	}
	return fmt.Errorf("pid %d does not hold the connection: %w", pid, ErrPeerGone)
}

// peerInode returns the inode of the socket at the other end of the
// connected unix socket fd, 0 if that end is closed.
func peerInode(fd int) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat socket: %w", err)
	}
	nl, err := diagSocket(fd)
	if err != nil {
		return 0, err
	}
	defer unix.Close(nl)
	s, err := unixdiag.Get(nl, uint32(st.Ino), unixdiag.ShowPeer)
	if err != nil {
		return 0, err
	}
	return s.Peer, nil
}

// diagSocket opens a sock_diag socket in the network namespace of the
// socket fd: the kernel looks sockets up only in the asker's namespace,
// and the agent's end of a connection lives in the client's.
func diagSocket(fd int) (int, error) {
	ns, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if errors.Is(err, unix.EPERM) {
		// Not root (the agent is): it could not enter another
		// namespace anyway, and its own is the likeliest.
		return unixdiag.Open()
	}
	if err != nil {
		return -1, fmt.Errorf("network namespace of the socket: %w", err)
	}
	defer unix.Close(ns)
	s, err := unixdiag.OpenInNS(ns)
	if err != nil {
		return -1, fmt.Errorf("network namespace of the socket: %w", err)
	}
	return s, nil
}

// forceNoPeerPidfd reports whether a test asked for the path of kernels
// without SO_PEERPIDFD.
func forceNoPeerPidfd() bool {
	return strings.TrimSpace(os.Getenv(noPeerPidfdEnv)) == "1"
}
