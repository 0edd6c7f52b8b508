//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/forksafe"
)

// waitDelay bounds how long Wait waits for output after the child exited.
const waitDelay = time.Second

// Child is a process started inside a sandbox.
type Child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // of cmd.Wait, valid once done is closed
}

// Start starts cmd inside the sandbox. The process is created in the
// sandbox's cgroup by clone3(CLONE_INTO_CGROUP), so its first instruction
// already runs confined, and with PR_SET_NO_NEW_PRIVS, so that neither it
// nor anything it executes can gain privileges through setuid binaries or
// file capabilities (which would also let it escape the uid the caller chose).
//
// SysProcAttr has no field for no_new_privs, and setting it in aigate
// itself would stick to aigate. The flag is per thread and inherited by
// clone, so Start sets it on a locked OS thread that does nothing but fork
// the child and wait for it, and lets the Go runtime discard that thread
// afterwards (a goroutine that exits while locked takes its thread with it).
// The same thread waiting keeps Pdeathsig meaningful: the kernel sends it
// when the thread that forked the child exits, not the process.
//
// cmd.SysProcAttr may carry credentials, and the caller decides about the
// terminal; Start sets UseCgroupFD, CgroupFD and Pdeathsig (SIGKILL: if
// aigate dies the tool must not run on unconfined), and WaitDelay when unset.
func (s *Sandbox) Start(cmd *exec.Cmd) (*Child, error) {
	// Held until the child exists in the cgroup: Close must not kill
	// before it is there (see Move).
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || !s.added || s.group == nil {
		return nil, errors.New("start in sandbox: the sandbox is not enforced")
	}
	if s.started {
		return nil, errors.New("start in sandbox: a child was already started")
	}
	fd, err := s.group.OpenFD()
	if err != nil {
		return nil, err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(fd.Fd())
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if cmd.WaitDelay == 0 {
		// When stdio are not files, Wait also waits for the copying
		// goroutines, which a background process holding the pipe keeps
		// open; the sandbox's leftovers are only killed after Wait, so
		// without a bound that would never end.
		cmd.WaitDelay = waitDelay
	}

	c, err := Fork(cmd, true)
	fd.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s in sandbox %s: %w", cmd.Path, s.Info.Name, err)
	}
	s.started = true
	return c, nil
}

// Fork starts cmd from a locked OS thread that lives as long as the child:
// the kernel sends Pdeathsig when the thread that forked the child exits,
// not the process, so the thread must not be reused or end early. With
// noNewPrivs the thread first sets PR_SET_NO_NEW_PRIVS, which clone
// inherits; the thread is then discarded with the flag (a goroutine that
// exits while locked takes its thread with it), so aigate itself keeps its
// privileges.
func Fork(cmd *exec.Cmd, noNewPrivs bool) (*Child, error) {
	c := &Child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with the child (and may
		// carry no_new_privs).
		defer close(c.done)
		if noNewPrivs {
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				c.err = fmt.Errorf("set no_new_privs: %w", err)
				started <- c.err
				return
			}
		}
		err := forksafe.Start(cmd)
		started <- err
		if err != nil {
			c.err = err
			return
		}
		c.err = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Signal sends sig to the child. Signalling a child that has exited is not
// an error.
func (c *Child) Signal(sig os.Signal) error {
	err := c.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Done is closed when the child has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Wait waits for the child to exit and returns its exit code the way a
// shell reports it: the exit status, or 128+N when killed by signal N.
// The error is non-nil only when waiting itself failed.
func (c *Child) Wait() (int, error) {
	<-c.done
	return ExitCode(c.cmd.ProcessState, c.err)
}

// ExitCode converts a finished process's state to a shell-style exit code.
func ExitCode(ps *os.ProcessState, waitErr error) (int, error) {
	if ps == nil {
		if waitErr == nil {
			waitErr = errors.New("process state unknown")
		}
		return -1, fmt.Errorf("wait for child: %w", waitErr)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ps.ExitCode(), nil
}
