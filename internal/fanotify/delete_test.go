//go:build linux

package fanotify

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// The helpers print their answer and then stay alive until their stdin
// closes (holdOp): these tests have no exit records, and a process that
// has exited and been reaped before the watcher reads its event cannot be
// placed (TestExitedMoverPlaced covers that case).
var _ = registerHelper("unlink", func(args []string) string { // unlink PATH (a file or an empty directory)
	return holdAfter(os.Remove(args[0]))
})

var _ = registerHelper("truncate", func(args []string) string { // truncate PATH: truncate(2) to 0, no open
	return holdAfter(unix.Truncate(args[0], 0))
})

var _ = registerHelper("rename-truncate", func(args []string) string { // rename-truncate FROM TO: rename, then truncate(2) TO to 0
	err := os.Rename(args[0], args[1])
	if err == nil {
		err = unix.Truncate(args[1], 0)
	}
	return holdAfter(err)
})

func holdAfter(err error) string {
	answer := "ok"
	if err != nil {
		answer = errnoName(err)
	}
	os.Stdout.WriteString(answer + "\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return ""
}

// held runs op inside s (or outside with s == nil), returns its answer,
// and keeps it alive until the test's cleanup or release: the kill of its
// sandbox may end it sooner ("" then).
func (e *env) held(t *testing.T, s *sbox, op string, args ...string) (answer string, release func()) {
	t.Helper()
	cmd := e.cmd(s, op, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := forksafe.Start(cmd); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { in.Close(); _ = cmd.Wait() }) }
	t.Cleanup(release)
	line, _ := bufio.NewReader(out).ReadString('\n')
	return strings.TrimSpace(line), release
}

// sleeper starts a process of s that only a kill ends, and returns a
// channel closed when it has.
func (e *env) sleeper(t *testing.T, s *sbox) <-chan struct{} {
	t.Helper()
	cmd := e.cmd(s, "sleep")
	if err := forksafe.Start(cmd); err != nil {
		t.Fatal(err)
	}
	died := make(chan struct{})
	go func() { _ = cmd.Wait(); close(died) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-died })
	return died
}

// TestDeleteProtected: fanotify has no permission event for unlink or
// rmdir; the directory watcher reports them after the fact (FAN_DELETE).
// A protected file that the backend holds a copy of, unlinked by a
// sandboxed process, is put back and reported restored, and the sandbox
// goes on; an empty directory above a protected path, removed, kills the
// sandbox (rm -rf .git followed by a copy of a prepared .git). The same by
// a process outside every sandbox, or of an unrelated file, is nothing.
func TestDeleteProtected(t *testing.T) {
	e := newEnv(t, nil)
	if e.b.watch == nil {
		testutil.SkipUnlessKernel(t, "no directory watcher")
	}
	cfg := e.write(filepath.Join(e.project, ".git", "config"), "[core]\n")
	hooks := filepath.Join(e.project, ".git", "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		t.Fatal(err)
	}
	other := e.write(filepath.Join(e.project, "notes.txt"), "x")
	// A name rule: the project tree is walked, and its directories watched.
	s := e.sandbox(policy.Policy{DenyWrite: rules(cfg, filepath.Join(hooks, "pre-commit")), DenyRead: rules(".env")})
	died := e.sleeper(t, s)

	t.Run("unrelated", func(t *testing.T) {
		got, release := e.held(t, s, "unlink", other)
		if got != "ok" {
			t.Fatalf("unlink %s: %s", other, got)
		}
		e.noEvent()
		release()
	})
	t.Run("file restored", func(t *testing.T) {
		before := e.count(events.KindFile, events.OpDelete, false)
		got, release := e.held(t, s, "unlink", cfg)
		if got != "ok" {
			t.Fatalf("unlink %s: %s (fanotify cannot refuse an unlink)", cfg, got)
		}
		ev := e.event()
		release()
		if ev.Op != events.OpDelete || ev.Path != cfg || ev.Sandbox != s.Name || !ev.Restored {
			t.Fatalf("event %+v, want a restored delete of %s by %s", ev, cfg, s.Name)
		}
		if r := ruleText(s, ev); r != cfg {
			t.Errorf("rule %q, want %q", r, cfg)
		}
		if got, err := os.ReadFile(cfg); err != nil || string(got) != "[core]\n" {
			t.Errorf("%s after the restore: %q %v", cfg, got, err)
		}
		if n := e.count(events.KindFile, events.OpDelete, false); n != before+1 {
			t.Errorf("delete counter %d, want %d", n, before+1)
		}
		select {
		case <-died:
			t.Fatal("a restored delete killed the sandbox")
		case <-time.After(200 * time.Millisecond):
		}
	})
	t.Run("outside", func(t *testing.T) {
		// Another process than the agent (whose own deletes are restores).
		got, release := e.held(t, nil, "unlink", cfg)
		if got != "ok" {
			t.Fatalf("unlink %s outside: %s", cfg, got)
		}
		defer release()
		// The copy follows the user: the path is held as absent now.
		waitFor(t, "the user's delete followed", func() bool {
			e.b.keep.mu.Lock()
			defer e.b.keep.mu.Unlock()
			c, ok := e.b.keep.files[cfg]
			return ok && c.fd == wasAbsent
		})
		e.noEvent()
		if _, err := os.Stat(cfg); !os.IsNotExist(err) {
			t.Errorf("the user's delete of %s was undone: %v", cfg, err)
		}
	})
	t.Run("directory above killed", func(t *testing.T) {
		out, _ := e.held(t, s, "unlink", hooks) // the kill may end it before it answers
		if _, err := os.Stat(hooks); !os.IsNotExist(err) {
			t.Fatalf("rmdir %s: %q, %v", hooks, out, err)
		}
		ev := e.event()
		if ev.Op != events.OpDelete || ev.Path != hooks || ev.Sandbox != s.Name || ev.Restored {
			t.Fatalf("event %+v, want an unrestored delete of %s by %s", ev, hooks, s.Name)
		}
		select {
		case <-died:
		case <-time.After(5 * time.Second):
			t.Error("the sandbox was not killed")
		}
	})
}

// TestTruncateProtected: truncate(2) by path needs no open, so no
// permission event refuses it (an O_TRUNC open is refused). The held inode
// of a deny_write file is marked for FAN_MODIFY: a truncate by a sandboxed
// process is reported after the fact, kills the sandbox, and then the
// keeper's snapshot of the content is written back (restored); one by the
// user is nothing, and the user's new content is what a restore gives.
func TestTruncateProtected(t *testing.T) {
	e := newEnv(t, nil)
	if e.b.watch == nil {
		testutil.SkipUnlessKernel(t, "no directory watcher")
	}
	cfg := e.write(filepath.Join(e.project, ".git", "config"), "[core]\n")
	s := e.sandbox(policy.Policy{DenyWrite: rules(cfg), DenyRead: rules(".env")})
	died := e.sleeper(t, s)

	if got := e.run(s, "open", cfg, "trunc"); got != "EPERM" {
		t.Fatalf("O_TRUNC open of %s inside: %s, want EPERM", cfg, got)
	}
	if ev := e.event(); ev.Op != events.OpWrite {
		t.Fatalf("event %+v, want the refused write", ev)
	}
	// The user's own truncate (another process than the agent).
	got, release := e.held(t, nil, "truncate", cfg)
	if got != "ok" {
		t.Fatalf("truncate outside: %s", got)
	}
	e.noEvent()
	release()
	// The user's edit in place, by another process than the agent (a
	// shell's > truncates, then writes): the snapshot follows it.
	const edited = "[core]\n\tbare = false\n"
	if out, err := exec.Command("sh", "-c", `printf '%s' "$1" > "$2"`, "sh", edited, cfg).CombinedOutput(); err != nil {
		t.Fatalf("edit %s outside: %v %s", cfg, err, out)
	}
	e.noEvent()
	waitFor(t, "the user's edit in the snapshot", func() bool {
		e.b.keep.mu.Lock()
		defer e.b.keep.mu.Unlock()
		c, ok := e.b.keep.files[cfg]
		return ok && c.snap && string(c.data) == edited
	})

	out, _ := e.held(t, s, "truncate", cfg) // the kill may end it before it answers
	ev := e.event()
	if ev.Op != events.OpTruncate || ev.Path != cfg || ev.Sandbox != s.Name || !ev.Restored {
		t.Fatalf("event %+v (helper %q), want a restored truncate of %s by %s", ev, out, cfg, s.Name)
	}
	if r := ruleText(s, ev); r != cfg {
		t.Errorf("rule %q, want %q", r, cfg)
	}
	// Killed before the event is sent.
	select {
	case <-died:
	case <-time.After(5 * time.Second):
		t.Error("the sandbox was not killed")
	}
	if got, err := os.ReadFile(cfg); err != nil || string(got) != edited {
		t.Errorf("%s after the truncate: %q %v, want %q written back", cfg, got, err, edited)
	}
}

// TestTruncateLargeKeptOnDisk: a 1 MiB protected file, too large for the
// agent's memory, is copied into the keep directory; a sandbox's truncate
// kills the sandbox and the whole content comes back.
func TestTruncateLargeKeptOnDisk(t *testing.T) {
	keepDir := filepath.Join(t.TempDir(), "keep")
	e := newEnv(t, func(o *Options) { o.KeepDir = keepDir })
	if e.b.watch == nil {
		testutil.SkipUnlessKernel(t, "no directory watcher")
	}
	var content strings.Builder
	for i := 0; content.Len() < 1<<20; i++ {
		fmt.Fprintf(&content, "line %d of a large protected file\n", i)
	}
	big := e.write(filepath.Join(e.project, ".git", "config"), content.String())
	s := e.sandbox(policy.Policy{DenyWrite: rules(big), DenyRead: rules(".env")})
	died := e.sleeper(t, s)
	if !e.b.keep.hasContent(big) {
		t.Fatalf("%s: no copy of its content: %s", big, e.b.keep.whyNoContent(big))
	}
	out, _ := e.held(t, s, "truncate", big)
	ev := e.event()
	if ev.Op != events.OpTruncate || ev.Path != big || !ev.Restored {
		t.Fatalf("event %+v (helper %q), want a restored truncate of %s", ev, out, big)
	}
	select {
	case <-died:
	case <-time.After(5 * time.Second):
		t.Error("the sandbox was not killed")
	}
	if got, err := os.ReadFile(big); err != nil || string(got) != content.String() {
		t.Errorf("%s after the truncate: %d bytes %v, want the %d written back", big, len(got), err, content.Len())
	}
}

// TestTruncateLarge: a file with no copy of its content (no keep
// directory, or past the disk bound) kills the sandbox on a truncate,
// which is not undone (and says so).
func TestTruncateLarge(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  bool
	}{{"no-keep-dir", false}, {"past-the-bound", true}} {
		t.Run(tc.name, func(t *testing.T) {
			keepDir := filepath.Join(t.TempDir(), "keep")
			e := newEnv(t, func(o *Options) {
				if tc.dir {
					o.KeepDir = keepDir
				}
			})
			if e.b.watch == nil {
				testutil.SkipUnlessKernel(t, "no directory watcher")
			}
			e.b.keep.mu.Lock()
			e.b.keep.diskFile = 128 << 10
			e.b.keep.mu.Unlock()
			big := e.write(filepath.Join(e.project, ".git", "config"), strings.Repeat("x", 128<<10+1))
			s := e.sandbox(policy.Policy{DenyWrite: rules(big), DenyRead: rules(".env")})
			died := e.sleeper(t, s)
			if e.b.keep.hasContent(big) || !e.b.keep.has(big) {
				t.Fatalf("%s: held %v with content %v, want held without content", big, e.b.keep.has(big), e.b.keep.hasContent(big))
			}
			out, _ := e.held(t, s, "truncate", big)
			ev := e.event()
			if ev.Op != events.OpTruncate || ev.Path != big || ev.Restored {
				t.Fatalf("event %+v (helper %q), want an unrestored truncate of %s", ev, out, big)
			}
			select {
			case <-died:
			case <-time.After(5 * time.Second):
				t.Error("the sandbox was not killed")
			}
		})
	}
}

// TestRestoreAfterTruncateElsewhere: a sandbox moves a protected file away
// and truncates it where it now lies, before the watcher reads the move
// (held back here). The restore writes the content from before, not what
// the held inode holds by then (nothing).
func TestRestoreAfterTruncateElsewhere(t *testing.T) {
	e := newEnv(t, nil)
	if e.b.watch == nil {
		testutil.SkipUnlessKernel(t, "no directory watcher")
	}
	const content = "[core]\n\thooksPath = /safe\n"
	cfg := e.write(filepath.Join(e.project, ".git", "config"), content)
	s := e.sandbox(policy.Policy{DenyWrite: rules(cfg), DenyRead: rules(".env")})
	away := filepath.Join(e.project, "away")

	e.b.watchMu.Lock()
	got, release := e.held(t, s, "rename-truncate", cfg, away)
	e.b.watchMu.Unlock()
	defer release()
	if got != "ok" {
		t.Fatalf("rename and truncate inside: %s", got)
	}
	ev := e.event()
	if ev.Op != events.OpRename || ev.Path != cfg || !ev.Restored {
		t.Fatalf("event %+v, want a restored rename of %s", ev, cfg)
	}
	if got, err := os.ReadFile(cfg); err != nil || string(got) != content {
		t.Errorf("%s after the restore: %q %v, want %q", cfg, got, err, content)
	}
}
