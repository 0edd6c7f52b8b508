//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

var _ = registerHelper("exchange", func(args []string) string { // exchange A B: renameat2(RENAME_EXCHANGE)
	return holdAfter(unix.Renameat2(unix.AT_FDCWD, args[0], unix.AT_FDCWD, args[1], unix.RENAME_EXCHANGE))
})

// TestSweepReplacedTree: a sandboxed process swaps .git with a prepared
// tree in one renameat2, so the planted hooks and config are in place
// before the watcher sees anything. The sandbox is killed, and then its
// sweep moves every planted entry into the project's .aigate-quarantine
// (event op planted, naming where) and writes the user's files back from
// the keeper (restored). With no copies held (the keeper at its bound:
// "unkept"), the planted files are still moved aside, and the events say
// the user's files were not restored. Remove waits for the sweep.
func TestSweepReplacedTree(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int
	}{{"kept", maxKept}, {"unkept", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if e.b.watch == nil {
				testutil.SkipUnlessKernel(t, "no directory watcher")
			}
			e.b.keep.max = tc.max
			git := filepath.Join(e.project, ".git")
			cfg := e.write(filepath.Join(git, "config"), "[core]\n")
			hook := e.write(filepath.Join(git, "hooks", "pre-commit"), "#!/bin/sh\nexit 0\n")
			prepared := filepath.Join(e.home, "g")
			e.write(filepath.Join(prepared, "config"), "[core]\n\tfsmonitor = evil\n")
			e.write(filepath.Join(prepared, "hooks", "pre-commit"), "evil")
			e.write(filepath.Join(prepared, "hooks", "post-commit"), "evil")
			s := e.sandbox(policy.Policy{DenyWrite: rules(filepath.Join(git, "hooks"), cfg), DenyRead: rules(".env")})
			died := e.sleeper(t, s)

			e.held(t, s, "exchange", git, prepared) // the kill may end it before it answers
			select {
			case <-died:
			case <-time.After(10 * time.Second):
				t.Fatal("the sandbox was not killed")
			}
			if err := e.b.Remove(s.ID); err != nil {
				t.Fatal(err)
			}
			var evs []events.Event
			for len(e.b.Events()) > 0 {
				evs = append(evs, <-e.b.Events())
			}
			moved := map[string]string{}
			restored := map[string]bool{}
			for _, ev := range evs {
				switch {
				case ev.Op == events.OpPlanted:
					moved[ev.Path] = ev.MovedTo
				case ev.Restored:
					restored[ev.Path] = true
				}
			}
			post := filepath.Join(git, "hooks", "post-commit")
			for _, p := range []string{cfg, hook, post} {
				to := moved[p]
				if !strings.HasPrefix(to, filepath.Join(e.project, quarantineDir)+"/") {
					t.Errorf("%s: moved to %q, want into the project's quarantine; events %+v", p, to, evs)
					continue
				}
				if data, err := os.ReadFile(to); err != nil || string(data) != "evil" && !strings.Contains(string(data), "evil") {
					t.Errorf("%s moved aside: %q %v, want the planted content", to, data, err)
				}
			}
			if _, err := os.Lstat(post); !os.IsNotExist(err) {
				t.Errorf("the planted %s is still there: %v", post, err)
			}
			want := map[string]string{cfg: "[core]\n", hook: "#!/bin/sh\nexit 0\n"}
			for p, content := range want {
				data, err := os.ReadFile(p)
				switch tc.name {
				case "kept":
					if string(data) != content || !restored[p] {
						t.Errorf("%s: %q %v (restored event %v), want the user's %q", p, data, err, restored[p], content)
					}
				case "unkept":
					if !os.IsNotExist(err) || restored[p] {
						t.Errorf("%s with no copy: %q %v (restored event %v), want nothing there", p, data, err, restored[p])
					}
				}
			}
			// Nothing outside the project was written: the prepared tree
			// (now the user's old .git) holds what it held.
			var names []string
			_ = filepath.Walk(prepared, func(p string, _ os.FileInfo, _ error) error {
				names = append(names, strings.TrimPrefix(p, prepared))
				return nil
			})
			sort.Strings(names)
			if got := strings.Join(names, " "); got != " /config /hooks /hooks/pre-commit" {
				t.Errorf("the old .git now at %s holds %q", prepared, got)
			}
		})
	}
}

// TestSweepLeavesOriginals: the sweep after a kill moves aside only what
// is not the user's. With no copies held (the keeper at its bound), a
// sandbox's unlink of one hook kills it and sweeps .git/hooks: the
// removed hook is reported lost (not restored), and the other hook, the
// file found at the start (same inode and file handle), stays where it
// is.
func TestSweepLeavesOriginals(t *testing.T) {
	e := newEnv(t, nil)
	if e.b.watch == nil {
		testutil.SkipUnlessKernel(t, "no directory watcher")
	}
	e.b.keep.max = 0
	hooks := filepath.Join(e.project, ".git", "hooks")
	gone := e.write(filepath.Join(hooks, "pre-commit"), "#!/bin/sh\nexit 0\n")
	other := e.write(filepath.Join(hooks, "post-merge"), "#!/bin/sh\necho merged\n")
	s := e.sandbox(policy.Policy{DenyWrite: rules(hooks), DenyRead: rules(".env")})
	died := e.sleeper(t, s)
	e.held(t, s, "unlink", gone)
	select {
	case <-died:
	case <-time.After(10 * time.Second):
		t.Fatal("the sandbox was not killed for a delete it could not be undone")
	}
	if err := e.b.Remove(s.ID); err != nil {
		t.Fatal(err)
	}
	var lost bool
	for len(e.b.Events()) > 0 {
		ev := <-e.b.Events()
		if ev.Op == events.OpPlanted {
			t.Errorf("moved aside: %+v", ev)
		}
		lost = lost || ev.Op == events.OpDelete && ev.Path == gone && !ev.Restored
	}
	if !lost {
		t.Errorf("no unrestored delete event for %s", gone)
	}
	if data, err := os.ReadFile(other); err != nil || string(data) != "#!/bin/sh\necho merged\n" {
		t.Errorf("the user's %s: %q %v", other, data, err)
	}
	if _, err := os.Lstat(filepath.Join(e.project, ".git", quarantineDir)); !os.IsNotExist(err) {
		t.Errorf("a quarantine was made: %v", err)
	}
}

func TestIsRestoreTemp(t *testing.T) {
	for n, want := range map[string]bool{
		".pre-commit.aigate-restore.12": true,
		".aigate-restore.3":             true,
		"x.aigate-restore.1":            false, // not hidden: not the keeper's
		".x.aigate-restore.1.desktop":   false,
		".x.aigate-restore.":            false,
		"pre-commit":                    false,
		".config.aigate-restore.1a":     false,
	} {
		if got := isRestoreTemp(n); got != want {
			t.Errorf("isRestoreTemp(%q) = %v, want %v", n, got, want)
		}
	}
}
