//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

var _ = registerHelper("rename", func(args []string) string { // rename FROM TO
	if err := os.Rename(args[0], args[1]); err != nil {
		return errnoName(err)
	}
	return "ok"
})

// exitRecords opens the kernel's exit records as the backend composition
// does: a standalone network object owns the sandbox table, and the exit
// program shares it.
func exitRecords(t *testing.T) (*loader.Net, *loader.ExitRecorder) {
	t.Helper()
	n, err := loader.OpenNet(loader.NetOptions{Backend: "fanotify"})
	if err != nil {
		testutil.SkipUnlessKernel(t, "network object: "+err.Error())
	}
	t.Cleanup(func() { n.Close() })
	shared, ok := n.Shared()
	if !ok {
		t.Fatal("a standalone Net shares no sandbox table")
	}
	r, err := loader.OpenExitRecorder(shared)
	if err != nil {
		testutil.SkipUnlessKernel(t, "exit records: "+err.Error())
	}
	return n, r
}

// TestExitedMoverPlaced: a sandboxed process renames .git (a directory
// above a protected hook) and exits, and is reaped, before the watcher
// reads the rename; it was never seen in a permission event, so /proc and
// the pid cache cannot place it. With the kernel's exit records the move
// is still the sandbox's: reported, and the sandbox killed. Without them
// (the control) it is taken as the user's: no event.
func TestExitedMoverPlaced(t *testing.T) {
	for _, records := range []bool{true, false} {
		name := map[bool]string{true: "records", false: "no-records"}[records]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			if e.b.watch == nil {
				testutil.SkipUnlessKernel(t, "no directory watcher")
			}
			n, r := exitRecords(t)
			if records {
				e.b.RecordExits(r) // closed by the backend's Close
			} else {
				t.Cleanup(func() { r.Close() })
			}
			hook := e.write(filepath.Join(e.project, ".git", "hooks", "pre-commit"), "#!/bin/sh\n")
			// A name rule: the project tree is walked, and its directories watched.
			s := e.sandbox(policy.Policy{DenyWrite: rules(hook), DenyRead: rules(".env")})
			if err := n.AddSandbox(s.ID, s.g, false); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n.RemoveSandbox(s.g.ID) })
			away := filepath.Join(e.home, "old-git")
			// A process of the sandbox that the kill must end.
			sleeper := e.cmd(s, "sleep")
			if err := forksafe.Start(sleeper); err != nil {
				t.Fatal(err)
			}
			died := make(chan struct{})
			go func() { _ = sleeper.Wait(); close(died) }()
			t.Cleanup(func() { _ = sleeper.Process.Kill(); <-died })

			// Hold the watcher back until the mover has been reaped.
			e.b.watchMu.Lock()
			cmd := e.cmd(s, "rename", filepath.Join(e.project, ".git"), away)
			out, err := output(cmd)
			pid := cmd.Process.Pid
			if id, ok := r.Exited(pid); !ok || id != s.g.ID {
				t.Errorf("exit record of %d: cgroup %d, %v; want %d", pid, id, ok, s.g.ID)
			}
			e.b.watchMu.Unlock()
			if err != nil || string(out) != "ok" {
				t.Fatalf("sandboxed rename: %q %v", out, err)
			}
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
				t.Fatalf("pid %d is alive again (reused): cannot tell", pid)
			}

			if !records {
				select {
				case ev := <-e.b.Events():
					t.Fatalf("without exit records the exited mover was placed: %+v", ev)
				case <-time.After(time.Second):
				}
				select {
				case <-died:
					t.Fatal("without exit records the sandbox was killed")
				default:
				}
				return
			}
			ev := e.event()
			if ev.Op != events.OpRename || ev.Path != filepath.Join(e.project, ".git") || ev.Sandbox != s.Name {
				t.Fatalf("event %+v, want a rename of %s/.git by %s", ev, e.project, s.Name)
			}
			if ev.PID != uint32(pid) {
				t.Errorf("event pid %d, want the mover's %d", ev.PID, pid)
			}
			if ev.Restored {
				t.Errorf("a moved directory reported as restored: %+v", ev)
			}
			select {
			case <-died:
			case <-time.After(5 * time.Second):
				t.Error("the sandbox was not killed")
			}
		})
	}
}
