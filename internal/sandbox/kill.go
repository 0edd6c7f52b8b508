//go:build linux

package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
)

// kill kills every process in g and below it and waits, up to timeout,
// until the kernel counts no task in it any more.
//
// An empty cgroup.procs is not enough. The kernel hides a thread-group
// leader from cgroup.procs as soon as every thread of the group has begun
// to exit, but each thread stays in the cgroup, keeping it populated,
// until it is through tearing down (files, memory): for a multi-threaded
// process (a Go program such as aigate's exec helper) that is a window of
// a few hundred microseconds in which rmdir fails with EBUSY. "populated"
// in cgroup.events is what rmdir checks, so that is what to wait for.
func kill(g *cgroup.Group, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if err := g.Kill(timeout); err != nil {
		return err
	}
	return waitUnpopulated(g.Path, deadline)
}

// waitUnpopulated polls the cgroup's "populated" key until it reads 0 or
// the deadline passes. A cgroup that is gone is unpopulated.
func waitUnpopulated(dir string, deadline time.Time) error {
	file := filepath.Join(dir, "cgroup.events")
	for {
		pop, err := populated(file)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !pop {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill cgroup %s: tasks still exiting after it was killed (uninterruptible sleep?)", dir)
		}
		time.Sleep(time.Millisecond)
	}
}

// populated reads the "populated" key of a cgroup.events file: 1 while any
// task is in the cgroup or below it.
func populated(file string) (bool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", file, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("populated ")); ok {
			return string(v) == "1", nil
		}
	}
	return false, fmt.Errorf("%s has no populated key", file)
}
