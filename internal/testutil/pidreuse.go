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

// pidReuseLock is the file whose lock PidReuse holds, for every test
// process on the machine.
const pidReuseLock = "/tmp/aigate-test-pidreuse.lock"

// PidReuse runs scenario, a test that hands a pid on with StartWithPID,
// until it could (scenario returns true), at most 5 times, serialised
// across every test process of the machine (CI runs packages side by
// side). StartWithPID turns the kernel's pid counter back; another test
// doing so meanwhile makes the machine's next forks walk through freed
// pids again, and a thread of any process, also of the process whose pid
// is handed on and of this one, can take the pid first (seen in CI). Then
// only a new attempt, with a new pid, helps.
func PidReuse(t testing.TB, scenario func() bool) {
	t.Helper()
	RequireRoot(t)
	f, err := os.OpenFile(pidReuseLock, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatalf("pid reuse lock: %v", err)
	}
	defer f.Close() // closing releases the lock
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("pid reuse lock %s: %v", pidReuseLock, err)
	}
	const attempts = 5
	for i := 1; i <= attempts; i++ {
		if scenario() {
			return
		}
		t.Logf("attempt %d: another process took the pid first; again with a new one", i)
	}
	t.Fatalf("%d attempts, and each time another process took the pid first", attempts)
}

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
// 3 s. It reports whether it could (else it says why in the log): called
// in PidReuse's scenario, which then tries again from the start. Only
// newCmd's path, arguments and credentials are used. The process and its
// shell are killed and reaped at cleanup.
func StartWithPID(t testing.TB, pid int, newCmd func() *exec.Cmd) bool {
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
	deadline := time.Now().Add(3 * time.Second)
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
			return true
		}
		stop()
		if err != nil {
			t.Fatalf("the shell forking %s with pid %d said nothing: %v", proto.Path, pid, err)
		}
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	t.Logf("could not start a process with pid %d in 3 s (%d tries); this test is pid %d; the pid's holder:\n%s", pid, tries, os.Getpid(), status)
	return false
}
