//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
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
	if err := forksafe.Start(gone); err != nil {
		t.Fatal(err)
	}
	stale, err := unix.Open("/proc/"+strconv.Itoa(gone.Process.Pid)+"/syscall", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = gone.Process.Kill()
	_ = gone.Wait()
	cmd, in, out := e.openAfterLine(s, cfg)
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

// TestFillTask: a denial names the opener's process, uid and command: from
// the thread's kept pidfd and /proc/TID/comm, else from /proc/TID/status;
// both the same, for a thread of this process with a name of its own and
// for a process of another user.
func TestFillTask(t *testing.T) {
	e := newEnv(t, nil)
	check := func(what string, tid int, want events.Event) {
		t.Helper()
		var byStatus events.Event
		fillTaskStatus(&byStatus, tid)
		if byStatus != want {
			t.Errorf("%s from /proc/TID/status: %+v, want %+v", what, byStatus, want)
		}
		if _, ok := e.b.threadCgroupID(tid); !ok {
			t.Logf("%s: no pidfd kept (PIDFD_GET_INFO needs Linux 6.13): /proc/TID/status only", what)
		} else if _, _, ok := e.b.pidfdTask(tid); !ok {
			t.Errorf("%s: a pidfd is kept, but it does not tell the process and uid", what)
		}
		var ev events.Event
		e.b.fillTask(&ev, tid)
		if ev != want {
			t.Errorf("%s: %+v, want %+v", what, ev, want)
		}
	}
	done := make(chan struct{})
	var onThread func()
	onThread = func() {
		runtime.LockOSThread() // the thread ends with the goroutine: its name goes too
		if unix.Gettid() == os.Getpid() {
			// The main thread, whose tid is the process id: another,
			// while this one stays locked.
			go onThread()
			return
		}
		defer close(done)
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("aigate-ft\x00")[0])), 0, 0, 0)
		check("a thread of this process", unix.Gettid(), events.Event{Comm: "aigate-ft", TGID: uint32(os.Getpid()), UID: uint32(os.Getuid())})
	}
	go onThread()
	<-done
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 54321, Gid: 54320}}
	if err := forksafe.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for range 100 { // until it has exec'ed sleep
		var ev events.Event
		if fillTaskStatus(&ev, cmd.Process.Pid); ev.Comm == "sleep" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	check("sleep as uid 54321", cmd.Process.Pid, events.Event{Comm: "sleep", TGID: uint32(cmd.Process.Pid), UID: 54321})
}

// TestSyscallFilesOutOfDescriptors: when the process has no descriptor
// left, the kept /proc/TID/syscall files are given back and the read
// made, rather than failing (an open of unknown kind: refused). In a
// helper process: the lowered limit must not touch the other tests.
func TestSyscallFilesOutOfDescriptors(t *testing.T) {
	testutil.RequireRoot(t)
	sleeper := exec.Command("sleep", "60")
	if err := forksafe.Start(sleeper); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	cmd := exec.Command(os.Args[0], strconv.Itoa(sleeper.Process.Pid))
	cmd.Env = append(os.Environ(), helperEnv+"=syscall-files-emfile")
	out, err := output(cmd)
	if err != nil || string(out) != "ok" {
		t.Fatalf("helper: %q, %v", out, err)
	}
}

// "syscall-files-emfile PID": keep this process's threads' syscall files,
// use up every descriptor under a lowered limit, then read PID's.
var _ = registerHelper("syscall-files-emfile", func(args []string) string {
	pid, _ := strconv.Atoi(args[0])
	var c syscallFiles
	var buf [256]byte
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err.Error()
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if _, err := c.read(tid, buf[:]); err != nil {
			return "read /proc/" + task.Name() + "/syscall: " + err.Error()
		}
	}
	lim := unix.Rlimit{Cur: 256, Max: 256}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err.Error()
	}
	for {
		if _, err := unix.Dup(0); err != nil {
			break
		}
	}
	if n, err := c.read(pid, buf[:]); err != nil || n == 0 {
		return fmt.Sprintf("read with no descriptor left and %d kept: %d bytes, %v", len(tasks), n, err)
	}
	return "ok"
})
