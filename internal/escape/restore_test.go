//go:build linux

package escape

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestEscapeGitConfigInside: `git config user.name x` and `git remote add`
// inside the sandbox write .git/config through config.lock and a rename.
// On LSM the rename is refused and git fails ("error: could not write
// config file .git/config: Operation not permitted", exit 4); on fanotify the rename goes through, git
// exits 0, and the rename is undone (event op rename, restored) while the
// session goes on. Either way .git/config is unchanged afterwards and the
// shell continues. git exits at once: the watcher places it by the
// permission event of its read of .git/config (pidCache), and a rename at
// the very end of the session is handled before the sandbox is removed.
func TestEscapeGitConfigInside(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		if out, err := b.outsideRun("git init -q -b main . && git config user.email u@example.com && git config user.name u"); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		before := b.read(".git/config")
		r := b.sh(`git config user.name x; echo "git config exit $?"
git remote add origin https://example.com/x.git; echo "git remote exit $?"; echo continued`)
		t.Logf("inside: %s", r)
		if r.code != 0 || !strings.Contains(r.stdout, "continued") {
			t.Fatalf("the session did not go on (exit %d):\n%s", r.code, r)
		}
		if got := b.read(".git/config"); got != before {
			t.Errorf(".git/config changed:\n%s\nwant:\n%s", got, before)
		}
		if b.backend == "fanotify" {
			e, ok := r.denied(events.OpRename, b.path(".git/config"))
			if !ok || !e.Restored {
				t.Errorf("no restored rename event for .git/config:\n%s", r)
			}
		}
	})
}

// TestEscapeRestoreFollowsUser: the user replaces .git/config from outside
// during a run (an editor's temporary file and rename, by a process that
// has exited when the agent reads the event); a later replacement by the
// sandbox is undone to the user's version, not to the one from the start
// of the run.
func TestEscapeRestoreFollowsUser(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		testutil.SkipUnlessKernel(t, "no python3")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		if b.backend != "fanotify" {
			return // LSM refuses the sandbox's rename: nothing to restore
		}
		b.write(".git/config", "# the user's first\n")
		done := make(chan result, 1)
		go func() {
			// planted is written first: the inode the user's replacement
			// frees may be reused by a file created after it, which the
			// stale inode rule of .git/config would then refuse.
			done <- b.sh(`printf '[core]\n\tfsmonitor = cp ~/.ssh/id_rsa /tmp/x\n' > planted && touch ready
while [ ! -e go ]; do sleep 0.05; done
python3 -c 'import os, time
os.rename("planted", ".git/config")
time.sleep(1)'; echo continued`)
		}()
		deadline := time.Now().Add(time.Minute)
		t.Cleanup(func() { _ = os.WriteFile(b.path("go"), nil, 0o644) }) // never leave the sandbox waiting
		for {
			if _, err := os.Stat(b.path("ready")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the sandbox did not start")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if out, err := b.outsideRun(`printf '# the user edited\n' > .git/config.new && mv .git/config.new .git/config && touch go`); err != nil {
			t.Fatalf("outside: %v\n%s", err, out)
		}
		r := <-done
		if got := b.read(".git/config"); got != "# the user edited\n" {
			t.Errorf(".git/config is %q, want the user's edit:\n%s", got, r)
		}
		if e, ok := r.denied(events.OpRename, b.path(".git/config")); !ok || !e.Restored {
			t.Errorf("no restored rename event:\n%s", r)
		}
		if r.code != 0 || !strings.Contains(r.stdout, "continued") {
			t.Errorf("the session did not go on (exit %d):\n%s", r.code, r)
		}
	})
}

// TestEscapeRestoreRepeated: replacements one after the other are each
// undone, and the files the sandbox creates between them are not refused
// (the inode a restore frees may be given to the next file: its inode rule
// must go with it). It logs the window between a rename and the restore as
// the mover sees it (docs/threat-model.md).
func TestEscapeRestoreRepeated(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		testutil.SkipUnlessKernel(t, "no python3")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		if b.backend != "fanotify" {
			return // LSM refuses each rename
		}
		b.write(".git/config", "# the user's\n")
		r := b.sh(`python3 -c 'import os, time
w = []
for i in range(20):
    try:
        open("p%d" % i, "w").write("X")
    except OSError as e:
        print("create p%d: %s" % (i, e))
        continue
    t = time.monotonic_ns()
    os.rename("p%d" % i, ".git/config")
    while open(".git/config").read() == "X":
        pass
    w.append((time.monotonic_ns() - t) // 1000)
    time.sleep(0.02)
w.sort()
print("restored", len(w), "window us median", w[len(w)//2], "max", w[-1])'`)
		t.Logf("%s", r.stdout)
		if strings.Contains(r.stdout, "create p") || !strings.Contains(r.stdout, "restored 20 ") {
			t.Errorf("not every replacement was undone, or a new file was refused:\n%s", r)
		}
		if got := b.read(".git/config"); got != "# the user's\n" {
			t.Errorf(".git/config is %q", got)
		}
		n := 0
		for _, e := range r.events {
			if e.Op == events.OpRename && e.Restored {
				n += int(e.N()) // identical ones may come folded
			}
		}
		if n != 20 || r.code != 0 {
			t.Errorf("%d restored rename events, want 20 (exit %d):\n%s", n, r.code, r)
		}
	})
}

// TestEscapeRenameIntoAbsent: Claude Code's first "don't ask again"
// writes .claude/settings.local.json, which does not exist yet, through a
// temporary file and a rename. LSM refuses the rename; fanotify removes
// the file moved there (the path was absent at the start) and reports a
// restored rename; the sandbox goes on either way.
func TestEscapeRenameIntoAbsent(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		testutil.SkipUnlessKernel(t, "no python3")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		b.mkdir(b.path(".claude"))
		target := ".claude/settings.local.json"
		r := b.sh(`python3 -c 'import os, time
open(".claude/tmp.json", "w").write("{\"hooks\": {\"SessionStart\": []}}\n")
os.rename(".claude/tmp.json", ".claude/settings.local.json")
time.sleep(1)
print("survived")'; echo continued`)
		if _, err := os.Lstat(b.path(target)); err == nil {
			t.Errorf("%s exists after the run: %q\n%s", target, b.read(target), r)
		}
		if r.code != 0 || !strings.Contains(r.stdout, "continued") {
			t.Errorf("the sandbox did not go on (exit %d):\n%s", r.code, r)
		}
		if b.backend == "fanotify" {
			if e, ok := r.denied(events.OpRename, b.path(target)); !ok || !e.Restored {
				t.Errorf("no restored rename event:\n%s", r)
			}
			if !strings.Contains(r.stdout, "survived") {
				t.Errorf("the mover was stopped:\n%s", r)
			}
		}
	})
}
