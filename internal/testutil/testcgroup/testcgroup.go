//go:build linux

package testcgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// Parent returns a parent cgroup (a path below the cgroup v2 mount, and its
// directory) for one test's sandboxes, named prefix-PID-TESTNAME. It skips
// (or fails, under AIGATE_REQUIRE_KERNEL=1) without root or cgroup v2. The
// cleanup kills and removes whatever is left in it; registered first, it
// runs after the cleanups of what the test made inside, so a cgroup one
// test failed to remove is reported there and cannot make later tests fail.
func Parent(t testing.TB, prefix string) (parent, dir string) {
	t.Helper()
	testutil.RequireRoot(t)
	root, err := cgroup.Mountpoint()
	if err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	parent = fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), name)
	dir = filepath.Join(root, parent)
	t.Cleanup(func() {
		if err := RemoveTree(dir); err != nil {
			t.Errorf("clean up parent cgroup: %v", err)
		}
	})
	return parent, dir
}

// RemoveTree kills every process below the cgroup dir and removes it with
// every cgroup in it, retrying for up to ten seconds. It waits for
// "populated 0" before each attempt: cgroup.procs empties before the last
// threads of a killed process have left the cgroup. A dir that is gone is
// not an error.
func RemoveTree(dir string) error {
	g, err := cgroup.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = g.Kill(5 * time.Second)
		if err == nil {
			if pop, _ := os.ReadFile(filepath.Join(dir, "cgroup.events")); !strings.Contains(string(pop), "populated 1") {
				if err = g.Remove(); err == nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove %s: %v", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StartIn starts name with args as a process born inside g
// (CLONE_INTO_CGROUP), and returns it with a channel closed once it has
// been reaped. Killing it is the caller's business.
func StartIn(t testing.TB, g *cgroup.Group, name string, args ...string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	fd, err := g.OpenFD()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	err = cmd.Start()
	fd.Close()
	if err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { cmd.Wait(); close(reaped) }()
	return cmd, reaped
}
