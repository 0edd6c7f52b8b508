//go:build linux

// Package uringops is the io_uring half of the re-executed helpers of the
// loader and lsm tests (apart from testutil, which internal/uring's own
// tests import).
package uringops

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/uring"
)

// uringRings are the helper's rings by mode, so that one helper's
// operations share one.
var uringRings = map[string]*uring.Ring{}

// Helper answers beyond errnos.
const (
	LeftBehind = 1004 // a thread did not follow the process into the sandbox
	NoThread   = 1006 // the mode's kernel thread does not exist
)

// Ring returns the helper's ring for mode, making it on first use.
func Ring(mode string) (*uring.Ring, int, error) {
	if r := uringRings[mode]; r != nil {
		return r, 0, nil
	}
	name, enter := strings.CutSuffix(mode, "+enter")
	m, err := uring.ParseMode(name)
	if err != nil {
		return nil, 0, err
	}
	r, err := uring.New(m)
	if err != nil {
		return nil, 0, err
	}
	uringRings[mode] = r
	if !enter {
		return r, 0, nil
	}
	// An allowed operation first, so that an io-wq worker exists before the
	// move (the SQPOLL thread exists from setup).
	fd, err := r.Openat(unix.AT_FDCWD, "/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("warm up the %s ring: %w", mode, err)
	}
	unix.Close(fd)
	if !uringHasThread(m) {
		return nil, NoThread, nil
	}
	procs := os.NewFile(3, "cgroup.procs")
	if _, err := procs.WriteString(strconv.Itoa(os.Getpid())); err != nil {
		return nil, 0, fmt.Errorf("enter the sandbox: %w", err)
	}
	procs.Close()
	// Every thread, io_uring's included, must now be where the process is.
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, 0, err
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, 0, err
	}
	for _, task := range tasks {
		cg, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "cgroup"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, 0, err
		}
		if err == nil && string(cg) != string(self) {
			comm, _ := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "comm"))
			fmt.Fprintf(os.Stderr, "thread %s (%s) is in %s, the process in %s", task.Name(), strings.TrimSpace(string(comm)), cg, self)
			return nil, LeftBehind, nil
		}
	}
	if !uringHasThread(m) {
		return nil, NoThread, nil
	}
	return r, 0, nil
}

// uringHasThread reports whether this process has the kernel thread that
// runs mode's operations (always true inline).
func uringHasThread(m uring.Mode) bool {
	prefix := map[uring.Mode]string{uring.Worker: "iou-wrk-", uring.SQPoll: "iou-sqp-"}[m]
	if prefix == "" {
		return true
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		comm, _ := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "comm"))
		if strings.HasPrefix(string(comm), prefix) {
			return true
		}
	}
	return false
}

// Errno is 0 for success, the errno of a refused operation, or 999
// when the ring itself failed.
func Errno(err error) unix.Errno {
	var e unix.Errno
	if err == nil {
		return 0
	}
	if errors.As(err, &e) && err == error(e) {
		return e
	}
	return 999
}

// Require skips (or fails under AIGATE_REQUIRE_KERNEL=1) where
// io_uring is compiled out or disabled: then it is no way out either.
func Require(t testing.TB) {
	t.Helper()
	r, err := uring.New(uring.Inline)
	if err != nil {
		testutil.SkipUnlessKernel(t, fmt.Sprintf("io_uring is not available: %v", err))
	}
	r.Close()
}
