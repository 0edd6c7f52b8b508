//go:build linux

package fanotify

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Why a guard process: when the last file descriptor of a fanotify group is
// closed, the kernel ALLOWS every pending permission event and stops
// reporting. If aigate crashed or were killed, the sandboxed tool would run
// on unconfined. The guard is a tiny copy of the aigate binary, in its own
// session so that Ctrl-C and the terminal's hangup do not reach it, holding a
// duplicate of the group's descriptor. It learns the sandbox cgroups over a
// socket; when the socket reaches end of file (aigate exited, cleanly or
// not) it kills every sandbox still registered, waits until they are gone,
// and only then exits, which releases the group. It also holds the
// sandboxes' network links (HoldLinks), which would otherwise detach the
// moment aigate dies, before the kill. When aigate stops sending its
// heartbeat for guardStall it freezes the sandboxes, and thaws them when the
// heartbeat returns: a stopped aigate (SIGSTOP, a debugger) leaves the
// sandbox paused, not unconfined.

const (
	guardEnv       = "AIGATE_FANOTIFY_GUARD"
	guardHeartbeat = 250 * time.Millisecond
	guardStall     = 2 * time.Second
)

func init() {
	if os.Getenv(guardEnv) == "1" {
		os.Exit(runGuard(0))
	}
}

// guard is aigate's end of the socket to the guard process.
type guard struct {
	mu   sync.Mutex
	fd   int // -1 once closed
	cmd  *exec.Cmd
	done chan struct{}
	err  error // why the guard exited, set before done closes
}

// startGuard starts the guard with a duplicate of the group descriptor.
// They talk over a SOCK_SEQPACKET pair (one message per line, and room for
// descriptors, see hold) that is the guard's standard input.
func startGuard(groupFD int) (*guard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start fanotify guard: find own binary: %w", err)
	}
	// A duplicate, owned by its *os.File: wrapping groupFD itself would let
	// the File's finalizer close the backend's descriptor (or whatever
	// reuses its number) at some later garbage collection.
	dup, err := unix.FcntlInt(uintptr(groupFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start fanotify guard: %w", err)
	}
	group := os.NewFile(uintptr(dup), "fanotify")
	defer group.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start fanotify guard: %w", err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "fanotify-guard")
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), guardEnv+"=1")
	cmd.Stdin = theirs
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{group}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("start fanotify guard %s: %w", exe, err)
	}
	g := &guard{fd: pair[0], cmd: cmd, done: make(chan struct{})}
	go func() {
		g.err = cmd.Wait()
		close(g.done)
	}()
	return g, nil
}

func (g *guard) send(line string, fds ...int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return errors.New("fanotify guard is closed")
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(g.fd, []byte(line), oob, nil, 0); err != nil {
		return fmt.Errorf("tell fanotify guard: %w", err)
	}
	return nil
}

func (g *guard) add(cgroupPath string) error { return g.send("add " + cgroupPath) }
func (g *guard) del(cgroupPath string) error { return g.send("del " + cgroupPath) }
func (g *guard) beat() error                 { return g.send("beat") }

// hold passes duplicates of fds to the guard, which keeps them until del
// of cgroupPath or, when aigate is gone, until it has killed the sandbox.
// Descriptors in flight are held by the socket: once sendmsg returns they
// outlive this process.
func (g *guard) hold(cgroupPath string, fds []int) error {
	for len(fds) > 0 {
		n := min(len(fds), guardMaxFDs)
		if err := g.send("hold "+cgroupPath, fds[:n]...); err != nil {
			return err
		}
		fds = fds[n:]
	}
	return nil
}

// guardMaxFDs is how many descriptors one message carries (the kernel's
// SCM_MAX_FD is 253).
const guardMaxFDs = 64

// close ends the socket and waits for the guard, which kills the sandboxes
// still registered before it exits.
func (g *guard) close(timeout time.Duration) error {
	g.mu.Lock()
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
	g.mu.Unlock()
	select {
	case <-g.done:
		return g.err
	case <-time.After(timeout):
		_ = g.cmd.Process.Kill()
		<-g.done
		return fmt.Errorf("fanotify guard did not exit within %s", timeout)
	}
}

// guardMsg is one message aigate sent: a line, and the descriptors that
// came with it.
type guardMsg struct {
	line string
	fds  []int
}

// readGuard reads messages from the socket fd until end of file (aigate
// closed it or died), then closes msgs.
func readGuard(fd int, msgs chan<- guardMsg) {
	defer close(msgs)
	buf := make([]byte, 8192)
	oob := make([]byte, unix.CmsgSpace(4*guardMaxFDs))
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || (n == 0 && oobn == 0) {
			return
		}
		m := guardMsg{line: string(buf[:n])}
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if fds, err := unix.ParseUnixRights(&cm); err == nil {
					m.fds = append(m.fds, fds...)
				}
			}
		}
		msgs <- m
	}
}

// runGuard is the guard process's main. Its fd 3 is the fanotify group,
// held open and never used; fd is its socket to aigate.
func runGuard(fd int) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE)
	msgs := make(chan guardMsg)
	go readGuard(fd, msgs)
	sandboxes := map[string]bool{}
	held := map[string][]int{} // descriptors to close once a sandbox is gone
	frozen := false
	setFrozen := func(v bool) {
		if frozen == v {
			return
		}
		frozen = v
		for p := range sandboxes {
			writeCgroup(p, "cgroup.freeze", v)
		}
	}
	stall := time.NewTimer(guardStall)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				// The held descriptors close when the guard exits, after
				// every sandbox is dead.
				for p := range sandboxes {
					killCgroup(p)
				}
				return 0
			}
			setFrozen(false)
			stall.Reset(guardStall)
			cmd, arg, _ := strings.Cut(m.line, " ")
			switch cmd {
			case "add":
				sandboxes[arg] = true
			case "del":
				delete(sandboxes, arg)
				for _, f := range held[arg] {
					unix.Close(f)
				}
				delete(held, arg)
			case "hold":
				held[arg] = append(held[arg], m.fds...)
				m.fds = nil
			}
			for _, f := range m.fds { // sent with any other message: not ours to keep
				unix.Close(f)
			}
		case <-stall.C:
			setFrozen(true)
		}
	}
}

func writeCgroup(dir, file string, on bool) {
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "aigate fanotify guard: %s %s: %v\n", file, dir, err)
	}
}

// killCgroup kills every process in the cgroup and below, and waits until
// they are gone (bounded), so that none of them runs again unconfined.
func killCgroup(dir string) {
	writeCgroup(dir, "cgroup.kill", true)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if !populated(dir) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "aigate fanotify guard: processes in %s survived cgroup.kill\n", dir)
}

func populated(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false
	}
	return strings.Contains(string(data), "populated 1")
}
