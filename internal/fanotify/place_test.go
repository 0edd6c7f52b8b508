//go:build linux

package fanotify

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/policy"
)

// "move-open CGROUP PATH": open PATH, move into CGROUP, open PATH again;
// print both results.
var _ = registerHelper("move-open", func(args []string) string {
	first := helperOp("open", []string{args[1], "r"})
	if err := os.WriteFile(filepath.Join(args[0], "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return err.Error()
	}
	return first + " " + helperOp("open", []string{args[1], "r"})
})

// TestPlacePidfdReused: a kept pidfd whose thread has gone is not taken
// for the thread that has its number now. Pid reuse is simulated: the
// pidfd of an exited outside process is kept under the tid of a live
// sandboxed one, whose open must still be refused.
func TestPlacePidfdReused(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.write(filepath.Join(e.project, ".env"), "TOKEN=x")
	s := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	if _, ok := e.b.threadCgroupID(os.Getpid()); !ok || e.b.noPlaceByID.Load() {
		// Before 6.13 openers are placed by /proc (TestPlaceByID/by-proc).
		t.Logf("this kernel cannot tell a thread's cgroup id (PIDFD_GET_INFO, Linux 6.13): nothing kept")
		return
	}
	gone := exec.Command("true")
	if err := forksafe.Start(gone); err != nil {
		t.Fatal(err)
	}
	stale, err := unix.PidfdOpen(gone.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := gone.Wait(); err != nil {
		t.Fatal(err)
	}
	// A sandboxed helper that waits for a line on stdin before opening.
	cmd, in, out := e.openAfterLine(s, secret)
	e.b.pidfds.mu.Lock()
	if e.b.pidfds.fds == nil {
		e.b.pidfds.closeLocked()
	}
	if old, ok := e.b.pidfds.fds[cmd.Process.Pid]; ok {
		unix.Close(old)
	}
	e.b.pidfds.fds[cmd.Process.Pid] = stale
	e.b.pidfds.mu.Unlock()
	e.b.mu.Lock()
	clear(e.b.placedIDs)
	e.b.mu.Unlock()
	in.Write([]byte("go\n"))
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "EPERM" {
		t.Fatalf("open inside, a stale pidfd kept under its tid: %s, want EPERM", got)
	}
}

// openAfterLine starts the "open-after-line" helper in sandbox s: it
// opens path once a line is written to in, and prints the result to out
// (read it after cmd.Wait).
func (e *env) openAfterLine(s *sbox, path string) (*exec.Cmd, io.WriteCloser, *strings.Builder) {
	e.t.Helper()
	cmd := e.cmd(s, "open-after-line", path)
	in, err := cmd.StdinPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	out := &strings.Builder{}
	cmd.Stdout = out
	if err := forksafe.Start(cmd); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, in, out
}

// "open-after-line PATH": read a line from stdin, then open PATH.
var _ = registerHelper("open-after-line", func(args []string) string {
	var b [64]byte
	_, _ = os.Stdin.Read(b[:])
	return helperOp("open", []string{args[0], "r"})
})

// TestPlaceByID: openers are placed the same by their cgroup id (Linux
// 6.13+, place.go) as by /proc/TID/cgroup: inside a sandbox's cgroup and
// below it refused, outside allowed. A cgroup placed as outside becomes a
// sandbox's when one is added on it, and outside again when it is
// removed: the cache of placements by id must not keep the old answer.
func TestPlaceByID(t *testing.T) {
	for _, byProc := range []bool{false, true} {
		name := map[bool]string{false: "by-id", true: "by-proc"}[byProc]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.noPlaceByID = byProc })
			secret := e.write(filepath.Join(e.project, ".env"), "TOKEN=x")
			s := e.sandbox(policy.Policy{DenyRead: rules(".env")})

			if got := e.run(s, "open", secret, "r"); got != "EPERM" {
				t.Fatalf("open inside: %s, want EPERM", got)
			}
			if got := e.run(s, "subcg", "below", secret); got != "EPERM" {
				t.Fatalf("open in a cgroup below the sandbox's: %s, want EPERM", got)
			}
			if got := e.run(nil, "open", secret, "r"); got != "ok" {
				t.Fatalf("open outside: %s, want ok", got)
			}

			// A cgroup that is no sandbox's yet: its opener is outside.
			g, err := cgroup.Create("aigate-test", fmt.Sprintf("fanplace%d-%d", os.Getpid(), time.Now().UnixNano()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = g.Remove() })
			later := &sbox{Sandbox: &enforce.Sandbox{ID: 90, Name: "later", CgroupID: g.ID, CgroupPath: g.Path, Policy: s.Policy, Mode: s.Mode}, g: g}
			if got := e.run(later, "open", secret, "r"); got != "ok" {
				t.Fatalf("open in a cgroup of no sandbox: %s, want ok", got)
			}
			if err := e.b.Add(context.Background(), later.Sandbox); err != nil {
				t.Fatal(err)
			}
			if got := e.run(later, "open", secret, "r"); got != "EPERM" {
				t.Fatalf("open in the cgroup once a sandbox's: %s, want EPERM", got)
			}
			if err := e.b.Remove(later.ID); err != nil {
				t.Fatal(err)
			}
			if got := e.run(later, "open", secret, "r"); got != "ok" {
				t.Fatalf("open in the cgroup once its sandbox is removed: %s, want ok", got)
			}

			// One process, its pidfd kept from its first open, moved into
			// the sandbox's cgroup: its next open is refused.
			if got := e.run(nil, "move-open", s.g.Path, secret); got != "ok EPERM" {
				t.Fatalf("open outside, then inside after a move: %q, want \"ok EPERM\"", got)
			}

			e.b.mu.RLock()
			cached := len(e.b.placedIDs)
			e.b.mu.RUnlock()
			switch {
			case byProc && cached != 0:
				t.Errorf("%d placements by id with the id path off", cached)
			case !byProc && e.b.noPlaceByID.Load():
				// Before 6.13: every opener was placed by /proc, as by-proc.
				t.Logf("this kernel cannot tell a thread's cgroup id (PIDFD_GET_INFO, Linux 6.13): placed by /proc")
			case !byProc && cached == 0:
				t.Errorf("no placement by id was made")
			}
		})
	}
}
