//go:build linux

package escape

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestEscapeGitDirs: the git directories of a project other than its
// .git (a submodule's .git/modules/NAME, a nested repository's .git, a
// linked worktree's .git/worktrees/NAME) and the files that point git at
// a git directory (a submodule's .git file, commondir) carry code that
// git outside runs: `git status` in the project runs `git status` in each
// submodule, and with it a core.fsmonitor planted in the submodule's
// config. Each run adds deny_write rules for those found at its start
// (package gitdirs); every plant is refused with a write event, the
// user's `git status` outside runs nothing planted, and git work inside
// (a commit in the submodule, `git status`) still succeeds. `git
// submodule update` is refused on the lsm backend: git rewrites each
// submodule's config at every update (docs/threat-model.md).
func TestEscapeGitDirs(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		b.write("~/.gitconfig", "[user]\n\tname = u\n\temail = u@example.com\n[protocol \"file\"]\n\tallow = always\n[init]\n\tdefaultBranch = main\n")
		if out, err := b.outsideRun(`set -e
git init -q ~/subsrc && cd ~/subsrc && echo a > a && git add a && git commit -q -m a
cd ~/proj && git init -q . && echo b > b && git add b && git commit -q -m b
git submodule add -q ../subsrc sub && git commit -q -m sub
git worktree add -q ../wt
mkdir -p vendor/x && cd vendor/x && git init -q . && echo c > c && git add c && git commit -q -m c`); err != nil {
			t.Fatalf("preparing the repositories: %v\n%s", err, out)
		}
		marker := filepath.Join(b.home, "RAN-OUTSIDE")
		fsmonitor := `printf '[core]\n\tfsmonitor = "touch ` + marker + `; false"\n' >> `
		hook := `printf '#!/bin/sh\ntouch ` + marker + `\n' > `
		plants := []plant{
			{"submodule config", fsmonitor + ".git/modules/sub/config", ".git/modules/sub/config"},
			{"submodule hook", hook + ".git/modules/sub/hooks/post-checkout", ".git/modules/sub/hooks/post-checkout"},
			{"submodule commondir", "echo ../../../.evil > .git/modules/sub/commondir", ".git/modules/sub/commondir"},
			{"submodule gitfile", "echo 'gitdir: ../.evil' > sub/.git", "sub/.git"},
			{"nested config", fsmonitor + "vendor/x/.git/config", "vendor/x/.git/config"},
			{"nested hook", hook + "vendor/x/.git/hooks/pre-commit", "vendor/x/.git/hooks/pre-commit"},
			{"project commondir", "echo \"$PWD/.evil\" > .git/commondir", ".git/commondir"},
			{"worktree config", fsmonitor + ".git/worktrees/wt/config.worktree", ".git/worktrees/wt/config.worktree"},
			{"worktree commondir", "echo \"$PWD/.evil\" > .git/worktrees/wt/commondir", ".git/worktrees/wt/commondir"},
		}
		existed := map[string]bool{}
		for _, p := range plants {
			_, err := os.Stat(b.path(p.target))
			existed[p.target] = err == nil
		}
		// The control first (a refused commondir left empty on fanotify
		// would stop git inside too): git work in the project and the
		// submodule. git submodule update rewrites each submodule's
		// config (core.worktree) through config.lock and a rename: the
		// lsm backend refuses the rename, fanotify puts the config back
		// after the fact; either way the config is the user's after it.
		script := `git status --short >/dev/null &&
(cd sub && echo more > a && git commit -q -am more) &&
git add sub && git commit -q -m 'sub moved' && git status --short >/dev/null &&
git -C vendor/x status --short >/dev/null && echo ok-git
if git submodule update -q; then echo update-ran; else echo update-refused; fi
`
		// A git directory of the sandbox's own for the pointers to name:
		// had one of them been written, git outside would read its config.
		script += "git init -q --bare .evil && " + fsmonitor + ".evil/config\n"
		for _, p := range plants {
			script += "if (" + p.cmd + ") 2>/dev/null; then echo 'WROTE " + p.name + "'; else echo 'REFUSED " + p.name + "'; fi\n"
		}
		config := b.read(".git/modules/sub/config")
		r := b.sh(script)
		if !strings.Contains(r.stdout, "ok-git") {
			t.Errorf("git work inside failed:\n%s", r)
		}
		update := "update-ran"
		if b.backend == "lsm" {
			update = "update-refused"
		}
		if !strings.Contains(r.stdout, update) {
			t.Errorf("git submodule update: want %s:\n%s", update, r)
		}
		if got := b.read(".git/modules/sub/config"); got != config {
			t.Errorf("the submodule's config changed:\n%s\nwas:\n%s", got, config)
		}
		for _, p := range plants {
			if !strings.Contains(r.stdout, "REFUSED "+p.name+"\n") {
				t.Errorf("%s: the write went through: %s", p.name, p.cmd)
			}
			if _, ok := r.denied(events.OpWrite, b.path(p.target)); !ok {
				t.Errorf("%s: no write event for %s", p.name, p.target)
			}
		}
		for _, want := range []string{"~/proj/.git/modules/sub (submodule sub): hooks/, config, config.worktree, commondir",
			"~/proj/sub/.git (points at ~/proj/.git/modules/sub)"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("run did not name the git files it keeps read-only (%s):\n%s", want, r.stderr)
			}
		}
		// fanotify refuses the O_CREAT open of a new protected file after
		// the kernel made it: an empty file stays (docs/backends.md). An
		// empty commondir makes git fail ("failed to read"), runs nothing;
		// the user removes it.
		for _, p := range plants {
			if existed[p.target] {
				continue
			}
			if fi, err := os.Stat(b.path(p.target)); err == nil {
				if fi.Size() != 0 || b.backend != "fanotify" {
					t.Errorf("%s: created (%d bytes)", p.target, fi.Size())
				}
				os.Remove(b.path(p.target))
			}
		}
		// The user's next ordinary git commands, outside.
		out, err := b.outsideRun(`git status --short; git -C vendor/x status --short; git -C ~/wt status --short
cd sub && git checkout -q HEAD~1 && git checkout -q -`)
		if _, serr := os.Stat(marker); serr == nil {
			t.Errorf("a planted command ran outside at the user's git status:\n%s", out)
		}
		if err != nil {
			t.Errorf("git outside failed: %v\n%s", err, out)
		}
		if t.Failed() {
			t.Logf("%s", r)
		}
	})
}

// TestEscapeGitDirsNewSubmodule: a submodule the sandbox adds during the
// run is a git directory no rule protects (the rules are fixed at start,
// and git writes the new config itself), so the core.fsmonitor it plants
// there would run at the user's next git status. Not prevented: run warns
// at its end, naming the new git directory and the setting. A submodule
// added without planting anything is not reported (the control).
func TestEscapeGitDirsNewSubmodule(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		b.write("~/.gitconfig", "[user]\n\tname = u\n\temail = u@example.com\n[protocol \"file\"]\n\tallow = always\n[init]\n\tdefaultBranch = main\n")
		if out, err := b.outsideRun(`set -e
for s in subsrc cleansrc; do git init -q ~/$s && (cd ~/$s && echo a > a && git add a && git commit -q -m a); done
cd ~/proj && git init -q . && echo b > b && git add b && git commit -q -m b`); err != nil {
			t.Fatalf("preparing the repositories: %v\n%s", err, out)
		}
		r := b.sh(`git submodule add -q ../cleansrc clean && git submodule add -q ../subsrc new &&
printf '[core]\n\tfsmonitor = "touch planted; false"\n' >> .git/modules/new/config && git commit -q -m new && echo added`)
		if !strings.Contains(r.stdout, "added") {
			t.Fatalf("adding the submodules inside failed:\n%s", r)
		}
		if !strings.Contains(r.stderr, "the sandbox made the git directory "+filepath.Join(b.proj, ".git/modules/new")+" (core.fsmonitor)") {
			t.Errorf("run did not warn of the planted setting:\n%s", r)
		}
		if strings.Contains(r.stderr, ".git/modules/clean") {
			t.Errorf("run warned of a submodule git made alone:\n%s", r)
		}
	})
}
