//go:build linux

package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// StartWithPID starts the command newCmd makes as a process whose pid is
// pid, which must be free (its last owner reaped): the way a pid is handed out again,
// without waiting for the kernel to cycle through every other. As root it
// tells the kernel that the last pid given out was pid-1 (ns_last_pid) and
// starts the process, again until the pid comes out right (every process
// of the machine, the Go runtime's threads too, takes pids from the same
// counter). The process is killed and reaped at cleanup.
func StartWithPID(t testing.TB, pid int, newCmd func() *exec.Cmd) *exec.Cmd {
	t.Helper()
	RequireRoot(t)
	f, err := os.OpenFile("/proc/sys/kernel/ns_last_pid", os.O_WRONLY, 0)
	if err != nil {
		SkipUnlessKernel(t, fmt.Sprintf("cannot choose the next pid (needs CONFIG_CHECKPOINT_RESTORE): %v", err))
	}
	defer f.Close()
	last := []byte(strconv.Itoa(pid - 1))
	for range 200 {
		cmd := newCmd()
		if _, err := f.WriteAt(last, 0); err != nil {
			t.Fatalf("set ns_last_pid to %d: %v", pid-1, err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", cmd.Path, err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			return cmd
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Fatalf("could not start a process with pid %d in 200 tries (is it still taken?)", pid)
	return nil
}
