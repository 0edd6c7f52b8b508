//go:build linux

package testutil

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartWithPID starts the command newCmd makes as a process whose pid is
// pid, which must be free (its last owner reaped): the way a pid is handed
// out again, without waiting for the kernel to cycle through every other.
// As root a shell tells the kernel that the last pid given out was pid-1
// (ns_last_pid) and forks the command at once, again until the pid comes
// out right (every process of the machine takes pids from the same
// counter, threads too). The shell, not this process, forks: a Go test
// process starts threads of its own at any time, and one started between
// the write and the fork took the pid for the rest of the test. While
// another process holds the pid, it waits for that one to end, up to
// 30 s. Only newCmd's path, arguments and credentials are used. The
// process and its shell are killed and reaped at cleanup.
func StartWithPID(t testing.TB, pid int, newCmd func() *exec.Cmd) {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat("/proc/sys/kernel/ns_last_pid"); err != nil {
		SkipUnlessKernel(t, fmt.Sprintf("cannot choose the next pid (needs CONFIG_CHECKPOINT_RESTORE): %v", err))
	}
	proto := newCmd()
	argv := proto.Args
	if a := proto.SysProcAttr; a != nil && a.Credential != nil {
		argv = append([]string{"setpriv", "--reuid=" + strconv.Itoa(int(a.Credential.Uid)), "--regid=" + strconv.Itoa(int(a.Credential.Gid)), "--clear-groups", "--", proto.Path}, argv[1:]...)
	} else {
		argv = append([]string{proto.Path}, argv[1:]...)
	}
	const script = `echo "$1" > /proc/sys/kernel/ns_last_pid || exit 1
shift
"$@" &
echo $!
wait`
	deadline := time.Now().Add(30 * time.Second)
	tries := 0
	for time.Now().Before(deadline) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			time.Sleep(10 * time.Millisecond) // taken by another process for now
			continue
		}
		tries++
		sh := exec.Command("sh", append([]string{"-c", script, "sh", strconv.Itoa(pid - 1)}, argv...)...)
		sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out, err := sh.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Start(); err != nil {
			t.Fatalf("start the shell that forks %s: %v", proto.Path, err)
		}
		stop := func() {
			_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
			_ = sh.Wait()
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		got, _ := strconv.Atoi(strings.TrimSpace(line))
		if err == nil && got == pid {
			t.Cleanup(stop)
			return
		}
		stop()
		if err != nil {
			t.Fatalf("the shell forking %s with pid %d said nothing: %v", proto.Path, pid, err)
		}
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	t.Fatalf("could not start a process with pid %d in 30 s (%d tries); this test is pid %d; the pid's holder:\n%s", pid, tries, os.Getpid(), status)
}
