//go:build linux

package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Group is the group whose members may talk to the agent.
const Group = "aigate"

// SocketEnv names the environment variable that moves the agent's socket
// (tests, a second agent next to the system one). It only changes where a
// client looks and an agent listens, never who may do what there.
const SocketEnv = "AIGATE_SOCKET"

// SocketPath is $AIGATE_SOCKET, else DefaultSocket.
func SocketPath() string {
	if p := os.Getenv(SocketEnv); p != "" {
		return p
	}
	return DefaultSocket
}

// ErrAgentRunning means another live agent holds the socket's lock: use
// that agent instead of starting one.
var ErrAgentRunning = errors.New("another aigate agent is running")

// Listener is the agent's socket and the lock that makes it the only one.
type Listener struct {
	*net.UnixListener
	Path string
	// Mode and GID are what the socket was given, for the log.
	Mode os.FileMode
	GID  int
	lock *os.File

	closeOnce sync.Once
	closeErr  error
}

// Listen creates the agent's socket at path: its directory 0755, the
// socket 0660 and owned by group when that group exists, else 0600 (root
// only), with a message saying how to let users in. A lock file next to
// the socket makes a second agent fail instead of stealing the socket; a
// socket left by a dead agent is replaced.
func Listen(path, group string) (*Listener, []string, error) {
	var notes []string
	dir := filepath.Dir(path)
	_, statErr := os.Lstat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create socket directory %s: %w", dir, err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// Ours: make sure the umask did not narrow it.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("set mode of %s: %w", dir, err)
		}
	} else if err := checkSocketDir(dir); err != nil {
		// Someone else's directory (the path may come from --socket
		// under sudo): never chmod it, and refuse one that others could
		// replace the socket in.
		return nil, nil, err
	}
	// The path may name any file (sudo aigate run --socket /etc/passwd):
	// only a socket left by a dead agent is ours to replace.
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != os.ModeSocket {
		return nil, nil, fmt.Errorf("%s exists and is not a socket: refusing to replace it; choose another --socket", path)
	}
	lockPath := path + ".lock"
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open agent lock %s: %w", lockPath, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("%w on %s (it holds %s): stop it first (systemctl stop aigate, or kill it)", ErrAgentRunning, path, lockPath)
		}
		return nil, nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	if err := os.Remove(path); err == nil {
		notes = append(notes, fmt.Sprintf("replaced the socket %s left by an agent that is gone", path))
	} else if !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, nil, fmt.Errorf("remove old socket %s: %w", path, err)
	}

	mode, gid := os.FileMode(0o600), 0
	if g, err := user.LookupGroup(group); err == nil {
		if n, err := strconv.Atoi(g.Gid); err == nil {
			mode, gid = 0o660, n
		}
	} else {
		notes = append(notes, fmt.Sprintf("group %q does not exist: only root can use the agent (sudo aigate setup creates it and adds you)", group))
	}
	// The socket is bound in a private directory and renamed into place
	// once its owner and mode are right: there is no moment in which anyone
	// else could connect to it (a umask dance would race with the cgroup
	// directories the agent creates).
	tmp, err := os.MkdirTemp(dir, ".aigate-sock-")
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("create socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Listener, []string, error) {
		ln.Close()
		lock.Close()
		return nil, nil, err
	}
	if err := os.Chown(tmpPath, 0, gid); err != nil {
		return fail(fmt.Errorf("chown socket %s: %w", path, err))
	}
	if err := os.Chmod(tmpPath, mode); err != nil {
		return fail(fmt.Errorf("chmod socket %s: %w", path, err))
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fail(fmt.Errorf("move socket into place at %s: %w", path, err))
	}
	return &Listener{UnixListener: ln, Path: path, Mode: mode, GID: gid, lock: lock}, notes, nil
}

// checkSocketDir refuses a directory whose owner is not this process's
// user or root, or that group or others may write to: they could replace
// the socket with their own.
func checkSocketDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != euid {
		return fmt.Errorf("socket directory %s belongs to uid %d: choose a directory of your own or root's", dir, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("socket directory %s is writable by others (mode %s): anyone could replace the socket; chmod go-w it", dir, fi.Mode().Perm())
	}
	return nil
}

// Close stops listening, removes the socket and releases the lock, in
// that order, so that a new agent never finds its fresh socket removed.
// Only the first call does anything: once the lock is released the socket
// path may belong to another agent, whose socket a second call would
// remove.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		err := l.UnixListener.Close()
		if rerr := os.Remove(l.Path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
		l.lock.Close()
		l.closeErr = err
	})
	return l.closeErr
}
