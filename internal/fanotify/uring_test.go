//go:build linux

package fanotify

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/uring"
)

// uringopen MODE PATH [w]: IORING_OP_OPENAT of PATH, read-only (write-only
// with w), from the context MODE names (uring.Mode's words). MODE+enter makes the ring, and
// its io-wq worker or SQPOLL thread, before the helper moves itself into the
// cgroup whose cgroup.procs is fd 3. Prints "ok" or the errno's name.
var _ = registerHelper("uringopen", func(args []string) string {
	name, enter := strings.CutSuffix(args[0], "+enter")
	m, err := uring.ParseMode(name)
	if err != nil {
		return err.Error()
	}
	r, err := uring.New(m)
	if err != nil {
		return err.Error()
	}
	defer r.Close()
	if enter {
		// An allowed open first, so that an io-wq worker exists outside.
		fd, err := r.Openat(unix.AT_FDCWD, "/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "warm up: " + err.Error()
		}
		unix.Close(fd)
		if _, err := os.NewFile(3, "cgroup.procs").WriteString(strconv.Itoa(os.Getpid())); err != nil {
			return "enter the sandbox: " + err.Error()
		}
	}
	flags := unix.O_RDONLY
	if len(args) > 2 && args[2] == "w" {
		flags = unix.O_WRONLY
	}
	fd, err := r.Openat(unix.AT_FDCWD, args[1], flags|unix.O_CLOEXEC, 0)
	if err != nil {
		var en unix.Errno
		if errors.As(err, &en) && err == error(en) {
			return unix.ErrnoName(en)
		}
		return err.Error()
	}
	unix.Close(fd)
	return "ok"
})

// TestUringOpen: a read-denied file opened through io_uring, whichever
// kernel thread performs the open, is refused with EPERM and reported, as
// open(2) is in TestDenyReadByPath.
func TestUringOpen(t *testing.T) {
	e := newEnv(t, nil)
	if r, err := uring.New(uring.Inline); err != nil {
		testutil.SkipUnlessKernel(t, "io_uring is not available: "+err.Error())
	} else {
		r.Close()
	}
	secret := e.write(filepath.Join(e.project, "config", "secret.txt"), "s3cret")
	other := e.write(filepath.Join(e.project, "config", "other.txt"), "fine")
	s := e.sandbox(policy.Policy{DenyRead: rules("config/secret.txt")})

	// Outside the sandbox io_uring reaches the file: the refusals below are
	// the sandbox's.
	if got := e.run(nil, "uringopen", "sqpoll", secret); got != "ok" {
		t.Fatalf("io_uring open of %s outside the sandbox: %s", secret, got)
	}
	for i, mode := range []string{"inline", "io-wq", "sqpoll", "io-wq+enter", "sqpoll+enter"} {
		t.Run(mode, func(t *testing.T) {
			run := func(path string) (string, int) {
				t.Helper()
				var cmd = e.cmd(s, "uringopen", mode, path)
				if strings.HasSuffix(mode, "+enter") {
					cmd = e.cmd(nil, "uringopen", mode, path)
					procs, err := os.OpenFile(filepath.Join(s.g.Path, "cgroup.procs"), os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					defer procs.Close()
					cmd.ExtraFiles = []*os.File{procs}
				}
				out, err := output(cmd)
				if err != nil {
					t.Fatalf("helper uringopen %s %s: %v", mode, path, err)
				}
				return string(out), cmd.Process.Pid
			}
			got, pid := run(secret)
			if got != "EPERM" {
				t.Fatalf("io_uring open of %s in the sandbox: %s, want EPERM", secret, got)
			}
			ev := e.event()
			if ev.Kind != events.KindFile || ev.Op != events.OpRead || ev.Path != secret || ev.CgroupID != s.CgroupID ||
				ev.TGID != uint32(pid) || ev.Rule != 1 || ev.Audit {
				t.Fatalf("event %+v, want a read of %s by %d in %s", ev, secret, pid, s.Name)
			}
			// The event names the thread that opened: it shows that the
			// mode really ran the open where it says.
			prefix := map[string]string{"io-wq": "iou-wrk-", "sqpoll": "iou-sqp-"}[strings.TrimSuffix(mode, "+enter")]
			if prefix != "" && (!strings.HasPrefix(ev.Comm, prefix) || ev.PID == ev.TGID) {
				t.Errorf("event from %q (tid %d), want a %s* thread of %d", ev.Comm, ev.PID, prefix, pid)
			}
			if prefix == "" && strings.HasPrefix(ev.Comm, "iou-") {
				t.Errorf("inline open reported from %q", ev.Comm)
			}
			if got, _ := run(other); got != "ok" {
				t.Fatalf("io_uring open of %s in the sandbox: %s", other, got)
			}
			e.noEvent()
			if n := e.count(events.KindFile, events.OpRead, false); n != uint64(i+1) {
				t.Fatalf("read counter %d, want %d", n, i+1)
			}
		})
	}
}

// TestUringOpenForWrite: an io_uring open leaves no flags to read in the
// opener's /proc/TID/syscall (the thread is in io_uring_enter, or is a
// kernel worker), and an open whose flags cannot be read counts as a
// write: an O_WRONLY open of a deny_write file through io_uring is refused
// in every mode, and reported as a write.
func TestUringOpenForWrite(t *testing.T) {
	e := newEnv(t, nil)
	if r, err := uring.New(uring.Inline); err != nil {
		testutil.SkipUnlessKernel(t, "io_uring is not available: "+err.Error())
	} else {
		r.Close()
	}
	target := e.write(filepath.Join(e.project, "config", "locked.txt"), "keep")
	s := e.sandbox(policy.Policy{DenyWrite: rules("config/locked.txt")})
	if got := e.run(nil, "uringopen", "sqpoll", target, "w"); got != "ok" {
		t.Fatalf("io_uring write open of %s outside the sandbox: %s", target, got)
	}
	for _, mode := range []string{"inline", "io-wq", "sqpoll"} {
		t.Run(mode, func(t *testing.T) {
			cmd := e.cmd(s, "uringopen", mode, target, "w")
			out, err := output(cmd)
			if err != nil {
				t.Fatalf("helper uringopen %s: %v", mode, err)
			}
			if string(out) != "EPERM" {
				t.Fatalf("io_uring O_WRONLY open of deny_write %s in the sandbox: %s, want EPERM", target, out)
			}
			ev := e.event()
			if ev.Kind != events.KindFile || ev.Op != events.OpWrite || ev.Path != target || ev.CgroupID != s.CgroupID {
				t.Fatalf("event %+v, want a write of %s in %s", ev, target, s.Name)
			}
		})
	}
	if data, _ := os.ReadFile(target); string(data) != "keep" {
		t.Errorf("%s now holds %q", target, data)
	}
}
