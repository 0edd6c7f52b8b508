//go:build linux

package fanotify

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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
// pipe; when the pipe reaches end of file (aigate exited, cleanly or not) it
// kills every sandbox still registered, waits until they are gone, and only
// then exits, which releases the group. When aigate stops sending its
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
		os.Exit(runGuard(os.Stdin))
	}
}

// guard is aigate's end of the pipe to the guard process.
type guard struct {
	mu   sync.Mutex
	w    io.WriteCloser
	cmd  *exec.Cmd
	done chan struct{}
	err  error // why the guard exited, set before done closes
}

// startGuard starts the guard with a duplicate of the group descriptor.
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
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start fanotify guard: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), guardEnv+"=1")
	cmd.Stdin = r
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{group}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start fanotify guard %s: %w", exe, err)
	}
	g := &guard{w: w, cmd: cmd, done: make(chan struct{})}
	go func() {
		g.err = cmd.Wait()
		close(g.done)
	}()
	return g, nil
}

func (g *guard) send(line string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.w == nil {
		return errors.New("fanotify guard is closed")
	}
	if _, err := io.WriteString(g.w, line+"\n"); err != nil {
		return fmt.Errorf("tell fanotify guard: %w", err)
	}
	return nil
}

func (g *guard) add(cgroupPath string) error { return g.send("add " + cgroupPath) }
func (g *guard) del(cgroupPath string) error { return g.send("del " + cgroupPath) }
func (g *guard) beat() error                 { return g.send("beat") }

// close ends the pipe and waits for the guard, which kills the sandboxes
// still registered before it exits.
func (g *guard) close(timeout time.Duration) error {
	g.mu.Lock()
	if g.w != nil {
		g.w.Close()
		g.w = nil
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

// runGuard is the guard process's main. Its fd 3 is the fanotify group,
// held open and never used.
func runGuard(in io.Reader) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	sandboxes := map[string]bool{}
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
		case line, ok := <-lines:
			if !ok {
				for p := range sandboxes {
					killCgroup(p)
				}
				return 0
			}
			setFrozen(false)
			stall.Reset(guardStall)
			cmd, arg, _ := strings.Cut(line, " ")
			switch cmd {
			case "add":
				sandboxes[arg] = true
			case "del":
				delete(sandboxes, arg)
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
