//go:build linux

package fanotify

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestCopyExecFailsClosed: an open of a file the size of a deny_exec
// binary whose opener's system call cannot be read (the read fails, or
// the thread stays "running" until the deadline) is taken for an exec:
// a copy is refused with the original's rule. Until 2026-12-06 not
// knowing meant a plain read, and the copy ran. Controls: a thread seen
// outside execve reads the copy; a same-size file with other content is
// allowed either way; a denied binary that can no longer be hashed
// (removed since start) refuses a file of its size (fail closed).
func TestCopyExecFailsClosed(t *testing.T) {
	dir := t.TempDir()
	denied := filepath.Join(dir, "denied")
	content := []byte("\x7fELF pretend binary, 40 bytes long....")
	writeFile(t, denied, content)
	cp := filepath.Join(dir, "copy")
	writeFile(t, cp, content)
	other := append([]byte(nil), content...)
	other[len(other)-1] ^= 0xff
	otherPath := filepath.Join(dir, "other")
	writeFile(t, otherPath, other)
	size := int64(len(content))

	// A real thread outside execve: a sleeping child.
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	tid := sleeper.Process.Pid
	waitAsleep(t, tid)

	var fail, running bool
	b := &Backend{}
	b.sysc.fail = func(int) bool { return fail }
	b.sysc.running = func(int) bool { return running }
	t.Cleanup(b.sysc.close)
	const rule = policy.RuleID(7)
	sb := &sandbox{plan: &plan{copies: map[int64][]*execCopy{size: {{path: denied, rule: rule}}}}}
	decide := func(path string) policy.RuleID {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		p := &pending{event: event{fd: fd, tid: tid}, sb: sb, deadline: time.Now().Add(50 * time.Millisecond)}
		return b.copyExec(p, size)
	}

	if got := decide(cp); got != 0 {
		t.Errorf("a read of the copy by a thread in %q: rule %d, want allowed", readSyscall(tid), got)
	}
	fail = true
	if got := decide(cp); got != rule {
		t.Errorf("/proc/TID/syscall unreadable: the copy got rule %d, want %d (refused)", got, rule)
	}
	if got := decide(otherPath); got != 0 {
		t.Errorf("/proc/TID/syscall unreadable: a same-size other file got rule %d, want allowed", got)
	}
	fail, running = false, true
	if got := decide(cp); got != rule {
		t.Errorf("thread running until the deadline: the copy got rule %d, want %d (refused)", got, rule)
	}
	running = false

	// The original gone before its first hash: nothing to compare with.
	gone := &sandbox{plan: &plan{copies: map[int64][]*execCopy{size: {{path: filepath.Join(dir, "removed"), rule: rule}}}}}
	sb = gone
	fail = true
	if got := decide(otherPath); got != rule {
		t.Errorf("denied binary unreadable: a file of its size got rule %d, want %d (refused)", got, rule)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func readSyscall(tid int) string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/syscall")
	return string(data)
}

// waitAsleep waits until tid sits in a system call that is not execve
// (sleep's nanosleep), so that inExec can know.
func waitAsleep(t *testing.T, tid int) {
	t.Helper()
	var c syscallFiles
	defer c.close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if in, known := c.inExec(tid, time.Now()); known && !in {
			return
		}
	}
	t.Fatalf("pid %d never seen outside execve: %q", tid, readSyscall(tid))
}
