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

// TestEscapeGitConfigInside: `git config user.name x` inside the sandbox
// writes .git/config through config.lock and a rename. On LSM the rename
// is refused and git fails; on fanotify the rename goes through, is
// undone (event op rename, restored) and the session goes on. Either way
// .git/config is unchanged afterwards and the shell continues.
func TestEscapeGitConfigInside(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		if out, err := b.outsideRun("git init -q -b main . && git config user.email u@example.com && git config user.name u"); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		before := b.read(".git/config")
		r := b.sh(`git config user.name x; echo "git exit $?"; echo continued`)
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
