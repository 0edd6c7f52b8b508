//go:build linux

package testutil

import (
	"io"
	"os/exec"
	"sync"
	"syscall"
	"testing"
)

// Held is a helper process that a test talks to over its stdin and stdout
// and that runs until its stdin is closed.
type Held struct {
	Cmd *exec.Cmd
	In  io.WriteCloser
	Out io.Reader

	once sync.Once
	err  error
}

// StartHeld starts cmd with pipes on stdin and stdout, directly inside the
// cgroup that cgroupFD is open on (CLONE_INTO_CGROUP, so it never runs
// outside it), or where the test runs when cgroupFD is negative. When the
// test ends, its stdin is closed and it is waited for; a test that cares
// how it ended calls Stop itself.
func StartHeld(tb testing.TB, cmd *exec.Cmd, cgroupFD int) *Held {
	tb.Helper()
	if cgroupFD >= 0 {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = cgroupFD
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	h := &Held{Cmd: cmd, In: in, Out: out}
	tb.Cleanup(func() { _ = h.Stop() })
	return h
}

// Stop closes the helper's stdin and waits for it to exit; later calls
// return the first one's result.
func (h *Held) Stop() error {
	h.once.Do(func() {
		h.In.Close()
		h.err = h.Cmd.Wait()
	})
	return h.err
}
