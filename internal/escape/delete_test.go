//go:build linux

package escape

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestEscapeRemoveGit: `rm -rf .git && cp -a prepared .git` replaces the
// hooks without opening one for writing (found by hand: 1 plant in 2 tries
// on fanotify, no event). The LSM backend refuses the unlink of the hook
// and the rmdir of .git/hooks with a write event (.git's own rmdir then
// fails: not empty). fanotify has no permission event for them: the
// directory watcher reports the deletes after the fact (op delete), a
// protected file is put back, and the removal of .git/hooks or .git (above
// the protected paths) kills the sandbox. The copy may land before the
// kill; then the agent sweeps the new .git once the sandbox is dead
// (internal/fanotify/sweep.go): the planted hook is moved aside and the
// user's written back. Asserted: the sandbox does not outlive the copy,
// and no planted hook is left (TestEscapeReplantGit tries it many times
// and runs git outside). The shell waits 30 s after the copy, not a few:
// under TCG the watcher can be seconds late, and the kill ends the wait
// at once.
func TestEscapeRemoveGit(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.write(".git/hooks/pre-commit", "#!/bin/sh\nexit 0\n")
		b.write(".git/config", "[core]\n")
		b.write(".git/HEAD", "ref: refs/heads/main\n")
		tmp := filepath.Join(b.home, "tmp")
		b.mkdir(tmp)
		r := b.sh(fmt.Sprintf(`cp -a .git %[1]s/g && echo 'cp ~/.ssh/id_rsa /tmp/x # PLANTED' >> %[1]s/g/hooks/pre-commit &&
rm -rf .git && cp -a %[1]s/g .git && echo replaced && sleep 30 && echo survived`, tmp))
		planted := strings.Contains(b.read(".git/hooks/pre-commit"), "PLANTED")
		switch b.backend {
		case "lsm":
			if planted || strings.Contains(r.stdout, "replaced") {
				t.Fatalf("the hooks were replaced:\n%s", r)
			}
			// The unlink of the hook is refused, so .git stays non-empty
			// and its rmdir fails (ENOTEMPTY: an rmdir is refused only
			// for a protected path itself, bpf/lsm.c).
			if _, ok := r.denied(events.OpWrite, filepath.Join(b.proj, ".git/hooks/pre-commit")); !ok {
				t.Errorf("no write event for .git/hooks/pre-commit:\n%s", r)
			}
		case "fanotify":
			if planted {
				t.Errorf("the planted hook is left in .git/hooks after the sandbox was killed:\n%s", r)
			}
			t.Logf("copied before the kill: %v; exit %d; stderr: %s", strings.Contains(r.stdout, "replaced"), r.code, r.stderr)
			if _, ok := r.denied(events.OpDelete, filepath.Join(b.proj, ".git")); !ok {
				t.Errorf("no delete event for .git:\n%s", r)
			}
			if strings.Contains(r.stdout, "survived") {
				t.Errorf("the sandbox outlived the removal of .git (exit %d, planted %v):\n%s", r.code, planted, r)
			}
		}
	})
}

// TestEscapeRemoveHook: `rm .git/hooks/pre-commit` inside. LSM refuses the
// unlink with a write event; fanotify sees it after the fact and puts the
// file back from the descriptor it holds (op delete, restored), and the
// session goes on. Either way the hook is there, unchanged, afterwards.
func TestEscapeRemoveHook(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		const hook = "#!/bin/sh\nexit 0\n"
		b.write(".git/hooks/pre-commit", hook)
		r := b.sh(`rm -f .git/hooks/pre-commit; echo continued`)
		if r.code != 0 || !strings.Contains(r.stdout, "continued") {
			t.Errorf("the session did not go on (exit %d):\n%s", r.code, r)
		}
		op := events.OpWrite // refused
		if b.backend == "fanotify" {
			op = events.OpDelete // seen after the fact
		}
		e, ok := r.denied(op, b.path(".git/hooks/pre-commit"))
		if !ok {
			t.Fatalf("no %s event for the hook:\n%s", op, r)
		}
		if b.backend == "fanotify" && !e.Restored {
			t.Errorf("the delete event does not say restored: %+v", e)
		}
		if got := b.read(".git/hooks/pre-commit"); got != hook {
			t.Errorf("the hook after the run: %q\n%s", got, r)
		}
	})
}

// TestEscapeTruncateProtected: coreutils' `truncate -s0` opens the file
// for writing (refused on both backends); truncate(2) by path (python's
// os.truncate) needs no open. LSM refuses it (path_truncate) with a write
// event. fanotify marks the held inode of each deny_write file for
// FAN_MODIFY and sees the truncate after the fact (op truncate): the
// sandbox is killed, then the content the agent holds (in memory up to
// 64 KiB, larger files on disk in its keep directory: a 1 MiB file here)
// is written back and the event says restored.
func TestEscapeTruncateProtected(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		testutil.SkipUnlessKernel(t, "no python3 for truncate(2) by path")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		const cfg = "[core]\n\tbare = false\n"
		b.write(".git/config", cfg)
		r := b.sh(`truncate -s0 .git/config; echo "truncate exit $?"`)
		if !strings.Contains(r.stdout, "truncate exit 1") {
			t.Errorf("coreutils truncate was not refused:\n%s", r)
		}
		if _, ok := r.denied(events.OpWrite, b.path(".git/config")); !ok {
			t.Errorf("no write event for the O_WRONLY open of coreutils truncate:\n%s", r)
		}
		if got := b.read(".git/config"); got != cfg {
			t.Fatalf(".git/config after coreutils truncate: %q\n%s", got, r)
		}

		script := `python3 -c 'import os; os.truncate(".git/config", 0)'; echo "python exit $?"`
		if b.backend == "fanotify" {
			// The kill ends the wait at once; under TCG the watcher can be
			// seconds late.
			script += `; sleep 30; echo survived`
		}
		r = b.sh(script)
		switch b.backend {
		case "lsm":
			if _, ok := r.denied(events.OpWrite, b.path(".git/config")); !ok {
				t.Errorf("no write event for truncate(2):\n%s", r)
			}
			if got := b.read(".git/config"); got != cfg {
				t.Errorf(".git/config was truncated: %q\n%s", got, r)
			}
		case "fanotify":
			e, ok := r.denied(events.OpTruncate, b.path(".git/config"))
			if !ok {
				t.Errorf("no truncate event for truncate(2):\n%s", r)
			}
			if !e.Restored {
				t.Errorf("the truncate event does not say restored: %+v", e)
			}
			if strings.Contains(r.stdout, "survived") {
				t.Errorf("the sandbox outlived the truncate (exit %d):\n%s", r.code, r)
			}
			if got := b.read(".git/config"); got != cfg {
				t.Errorf(".git/config after the truncate: %q, want the content written back\n%s", got, r)
			}

			// A file too large for the agent's memory (over 64 KiB):
			// its copy is on disk in the agent's keep directory.
			big := cfg + strings.Repeat("# a long comment line of a large protected config file\n", 1<<20/56)
			b.write(".git/config", big)
			r = b.sh(script)
			if e, ok := r.denied(events.OpTruncate, b.path(".git/config")); !ok || !e.Restored {
				t.Errorf("1 MiB file: no restored truncate event (%v %+v):\n%s", ok, e, r)
			}
			if strings.Contains(r.stdout, "survived") {
				t.Errorf("1 MiB file: the sandbox outlived the truncate (exit %d):\n%s", r.code, r)
			}
			if got := b.read(".git/config"); got != big {
				t.Errorf("1 MiB file after the truncate: %d bytes, want the %d written back", len(got), len(big))
			}
		}
	})
}

// TestEscapeMoveAwayTruncate: move .git/config out of the way and
// truncate it where it lies, so that a restore from the held inode would
// put back an empty file. LSM refuses the rename (a write event). fanotify
// puts the file back with the content from before (its copy in the
// agent's memory), whichever of the restore and the truncate comes first.
func TestEscapeMoveAwayTruncate(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		testutil.SkipUnlessKernel(t, "no python3")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		const cfg = "[core]\n\thooksPath = /safe\n"
		b.write(".git/config", cfg)
		r := b.sh(`python3 -c 'import os
os.rename(".git/config", "away")
os.truncate("away", 0)'; echo "python exit $?"; sleep 1`)
		op := events.OpWrite // refused
		if b.backend == "fanotify" {
			op = events.OpRename // seen after the fact
		}
		e, ok := r.denied(op, b.path(".git/config"))
		if !ok {
			t.Errorf("no %s event for the rename:\n%s", op, r)
		}
		if b.backend == "fanotify" && !e.Restored {
			t.Errorf("the rename event does not say restored: %+v", e)
		}
		if got := b.read(".git/config"); got != cfg {
			t.Errorf(".git/config after the run: %q, want %q\n%s", got, cfg, r)
		}
	})
}
