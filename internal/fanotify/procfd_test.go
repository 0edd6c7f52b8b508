//go:build linux

package fanotify

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
)

// "open-seq PATH MODE...": open PATH once per MODE (as "open" does), all
// from one thread, and print the results separated by spaces.
var _ = registerHelper("open-seq", func(args []string) string {
	runtime.LockOSThread()
	var out []string
	for _, mode := range args[1:] {
		out = append(out, helperOp("open", []string{args[0], mode}))
	}
	return strings.Join(out, " ")
})

// TestSyscallFileKeptFresh: one thread opens a deny_write file for writing,
// then read-only, and so on. Its /proc/TID/syscall is kept open between
// the events (procfd.go); each decision must read what the thread does
// now, not what the kept file said before (a plain read at the file's
// offset says nothing the second time; a cached line says "write").
func TestSyscallFileKeptFresh(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.write(filepath.Join(e.project, "ci.yaml"), "x")
	s := e.sandbox(policy.Policy{DenyWrite: rules("ci.yaml")})
	want := "EPERM ok EPERM ok ok EPERM"
	if got := e.run(s, "open-seq", cfg, "w", "r", "w", "r", "r", "rw"); got != want {
		t.Fatalf("opens of deny_write %s from one thread: %s, want %s", cfg, got, want)
	}
}

// TestSyscallFileStale: a kept /proc/TID/syscall of a thread that is gone,
// found under the number of a new thread, is dropped and the new thread's
// opened: its read-only open of a deny_write file is allowed (the stale
// file answers ESRCH, which taken as the answer would refuse it as an open
// of unknown kind), and its open for writing refused.
func TestSyscallFileStale(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.write(filepath.Join(e.project, "ci.yaml"), "x")
	s := e.sandbox(policy.Policy{DenyWrite: rules("ci.yaml")})
	gone := exec.Command("sleep", "60")
	if err := gone.Start(); err != nil {
		t.Fatal(err)
	}
	stale, err := unix.Open("/proc/"+strconv.Itoa(gone.Process.Pid)+"/syscall", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = gone.Process.Kill()
	_ = gone.Wait()
	cmd := e.cmd(s, "open-after-line", cfg)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := &e.b.sysc
	c.mu.Lock()
	if c.fds == nil {
		c.closeLocked()
	}
	if old, ok := c.fds[cmd.Process.Pid]; ok {
		unix.Close(old)
	}
	c.fds[cmd.Process.Pid] = stale
	c.mu.Unlock()
	_, _ = in.Write([]byte("go\n"))
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "ok" {
		t.Fatalf("read-only open of deny_write %s, a stale /proc/TID/syscall kept under the opener's tid: %s, want ok", cfg, got)
	}
	if got := e.run(s, "open", cfg, "w"); got != "EPERM" {
		t.Fatalf("open for writing of deny_write %s: %s, want EPERM", cfg, got)
	}
	e.event()
}

// TestFdPathLong: an event's file is named through the kept /proc/self/fd
// with a buffer on the stack; a longer path is read again the long way,
// never cut. A deny_read file at a path longer than that buffer is refused
// and reported by its whole path.
func TestFdPathLong(t *testing.T) {
	e := newEnv(t, nil)
	dir := e.project
	for len(dir) < 700 {
		dir = filepath.Join(dir, strings.Repeat("d", 60))
	}
	secret := e.write(filepath.Join(dir, ".env"), "TOKEN=x")
	short := e.write(filepath.Join(e.project, "short.txt"), "x")
	for _, p := range []string{short, secret} {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := e.b.fdPath(fd)
		unix.Close(fd)
		if got != p {
			t.Fatalf("fdPath of %d bytes: %q, want %q", len(p), got, p)
		}
	}
	s := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	if got := e.run(s, "open", secret, "r"); got != "EPERM" {
		t.Fatalf("open inside of deny_read %s: %s, want EPERM", secret, got)
	}
	if ev := e.event(); ev.Path != secret {
		t.Fatalf("event path %q, want %q", ev.Path, secret)
	}
}
