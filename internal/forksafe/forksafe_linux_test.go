//go:build linux

package forksafe

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// childEnv makes the test binary the process under test: it holds a
// fanotify group with a FAN_OPEN_EXEC_PERM mark on a copy of true(1),
// answers its events from a goroutine, collects garbage all the time, and
// forks the marked binary again and again (plain: through cmd.Start;
// otherwise through Start).
const childEnv = "AIGATE_FORKSAFE_CHILD"

// forks is how many times the child execs the marked binary.
const forks = 100

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(forkMarked(mode == "plain"))
	}
	os.Exit(m.Run())
}

// A process that answers fanotify permission events itself forks a
// binary its own group marks, while garbage is collected all the time,
// and does not hang. With cmd.Start (AIGATE_FORKSAFE_CHILD=plain) it hangs
// at one of the first forks: the collector stopping the world, the fork in
// clone, its child in fanotify_handle_event.
func TestStartDoesNotDeadlock(t *testing.T) {
	testutil.RequireRoot(t)
	if out, hung := runChild(t, "start", 150*time.Second); hung {
		t.Fatalf("the process hung forking a binary its own fanotify group marks, through Start:\n%s", out)
	}
}

// runChild runs the test binary as the process under test, and kills it
// when it has not ended within d: hung.
func runChild(t *testing.T, mode string, d time.Duration) (out string, hung bool) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "TMPDIR="+t.TempDir())
	var b testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &b, &b
	// Its own process group: a hung child leaves its fork hung in the
	// exec, holding the group alive (the forked process shares its
	// descriptors until the exec), so both are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, b.String())
		}
		return b.String(), false
	case <-time.After(d):
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-done
		return b.String(), true
	}
}

func forkMarked(plain bool) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 2 }
	bin := filepath.Join(os.TempDir(), "marked-true")
	src, err := exec.LookPath("true")
	if err != nil {
		return fail(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		return fail(err)
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return fail(fmt.Errorf("fanotify_init: %w", err))
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, bin); err != nil {
		return fail(fmt.Errorf("fanotify_mark: %w", err))
	}
	go answer(fd)
	Answering()
	// Garbage, collected all the time, as an agent's reader and event
	// stream make.
	debug.SetGCPercent(1)
	go func() {
		var keep [][]byte
		for i := 0; ; i++ {
			keep = append(keep, make([]byte, 4096))
			if len(keep) > 64 {
				keep = keep[:0]
			}
		}
	}()
	for i := 0; i < forks; i++ {
		cmd := exec.Command(bin)
		start := Start
		if plain {
			start = (*exec.Cmd).Start
		}
		if err := start(cmd); err != nil {
			return fail(fmt.Errorf("fork %d: %w", i, err))
		}
		if err := cmd.Wait(); err != nil {
			return fail(fmt.Errorf("fork %d: %w", i, err))
		}
		if i%50 == 0 {
			fmt.Println("forked", i)
		}
	}
	fmt.Println("forked", forks)
	return 0
}

// answer allows every permission event of group fd.
func answer(fd int) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(2)
		}
		for off := 0; off+unix.FAN_EVENT_METADATA_LEN <= n; {
			var md unix.FanotifyEventMetadata
			if _, err := binary.Decode(buf[off:], binary.NativeEndian, &md); err != nil {
				fmt.Fprintln(os.Stderr, "decode:", err)
				os.Exit(2)
			}
			_ = strconv.Itoa(int(md.Pid)) // some garbage per event
			resp := unix.FanotifyResponse{Fd: md.Fd, Response: unix.FAN_ALLOW}
			b, _ := binary.Append(nil, binary.NativeEndian, &resp)
			if _, err := unix.Write(fd, b); err != nil {
				fmt.Fprintln(os.Stderr, "respond:", err)
			}
			unix.Close(int(md.Fd))
			off += int(md.Event_len)
		}
	}
}
