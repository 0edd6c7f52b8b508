//go:build linux

package escape

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/e2e"
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
		config := b.read(".git/modules/sub/config")
		rc := b.sh(script)
		if !strings.Contains(rc.stdout, "ok-git") {
			t.Errorf("git work inside failed:\n%s", rc)
		}
		update := "update-ran"
		if b.backend == "lsm" {
			update = "update-refused"
		}
		if !strings.Contains(rc.stdout, update) {
			t.Errorf("git submodule update: want %s:\n%s", update, rc)
		}
		if got := b.read(".git/modules/sub/config"); got != config {
			t.Errorf("the submodule's config changed:\n%s\nwas:\n%s", got, config)
		}
		// The plants in a sandbox of their own: on fanotify the config git
		// renamed over the user's is put back after the fact (~1 ms at low
		// load, docs/backends.md), and a plant in that window would reach
		// git's replacement, not the protected file (then undone with it).
		// A git directory of the sandbox's own for the pointers to name:
		// had one of them been written, git outside would read its config.
		script = "git init -q --bare .evil && " + fsmonitor + ".evil/config\n"
		for _, p := range plants {
			script += "if (" + p.cmd + ") 2>/dev/null; then echo 'WROTE " + p.name + "'; else echo 'REFUSED " + p.name + "'; fi\n"
		}
		r := b.sh(script)
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
// and git writes the new config itself), so a core.fsmonitor or a hook
// the sandbox plants there would run at the user's next git status or
// checkout. Not prevented inside; once the sandbox ended the agent
// defuses it: the planted keys go from the config (the rest kept, the
// original beside it), the hook is moved aside, and run names both and
// how to put them back. The user's git status outside then runs nothing,
// and the submodule still works with its url. A submodule added without
// planting anything, and a linked worktree (its commondir names the main
// repository's git directory), are left as git made them (the controls).
func TestEscapeGitDirsNewSubmodule(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		prepareNewSubmodule(t, b)
		r := b.sh(`git submodule add -q ../cleansrc clean && git worktree add -q wt && git submodule add -q ../subsrc new && ` + plantNewSubmodule(b) + ` && git commit -q -m new && echo added`)
		if !strings.Contains(r.stdout, "added") {
			t.Fatalf("adding the submodules inside failed:\n%s", r)
		}
		for _, want := range []string{"the sandbox made the git directory " + tildeOf(b, b.path(".git/modules/new")),
			"config: core.fsmonitor removed, the original is " + tildeOf(b, b.path(".git/modules/new/config.aigate-")),
			"hooks/post-checkout: hook moved aside", "mv "} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("run did not say %q:\n%s", want, r)
			}
		}
		if strings.Contains(r.stderr, ".git/modules/clean") || strings.Contains(r.stderr, ".git/worktrees/wt") {
			t.Errorf("run named a submodule or worktree git made alone:\n%s", r)
		}
		checkNewSubmoduleDefused(t, b)
		// A linked worktree's commondir names the main repository's git
		// directory, there at start: it stays, and the worktree works.
		if out, err := b.outsideRun(`git -C wt status --short`); err != nil {
			t.Errorf("the worktree made inside does not work outside: %v\n%s", err, out)
		}
	})
}

func prepareNewSubmodule(t *testing.T, b *box) {
	t.Helper()
	b.write("~/.gitconfig", "[user]\n\tname = u\n\temail = u@example.com\n[protocol \"file\"]\n\tallow = always\n[init]\n\tdefaultBranch = main\n")
	if out, err := b.outsideRun(`set -e
for s in subsrc cleansrc; do git init -q ~/$s && (cd ~/$s && echo a > a && git add a && git commit -q -m a); done
cd "` + b.proj + `" && git init -q . && echo b > b && git add b && git commit -q -m b`); err != nil {
		t.Fatalf("preparing the repositories: %v\n%s", err, out)
	}
}

// plantNewSubmodule is the sandbox's plant in the submodule it added:
// a core.fsmonitor and a post-checkout hook that leave a marker.
func plantNewSubmodule(b *box) string {
	m := newSubmoduleMarker(b)
	return `printf '[core]\n\tfsmonitor = "touch ` + m + `; false"\n' >> .git/modules/new/config &&
printf '#!/bin/sh\ntouch ` + m + `\n' > .git/modules/new/hooks/post-checkout && chmod +x .git/modules/new/hooks/post-checkout`
}

func newSubmoduleMarker(b *box) string { return filepath.Join(b.home, "RAN-OUTSIDE") }

// checkNewSubmoduleDefused is the user's next git commands outside: they
// run nothing planted, and the submodule works, its url kept.
func checkNewSubmoduleDefused(t *testing.T, b *box) {
	t.Helper()
	out, err := b.outsideRun(`git status --short && git -C new status --short && git -C new checkout -q HEAD~0 && git -C new config remote.origin.url && { [ ! -d clean ] || git -C clean status --short; }`)
	if _, serr := os.Stat(newSubmoduleMarker(b)); serr == nil {
		t.Errorf("what the sandbox planted in the submodule it added ran outside at the user's git status:\n%s", out)
	}
	if err != nil || !strings.Contains(out, "subsrc") {
		t.Errorf("the submodule does not work outside (or lost its url): %v\n%s", err, out)
	}
	if cfg := b.read(".git/modules/new/config"); strings.Contains(cfg, "fsmonitor") || !strings.Contains(cfg, "worktree = ") {
		t.Errorf("the submodule's config after the run:\n%s", cfg)
	}
	if ents, _ := filepath.Glob(b.path(".git/modules/clean/*.aigate-*")); len(ents) != 0 {
		t.Errorf("the clean submodule was changed: %q", ents)
	}
}

func tildeOf(b *box, p string) string { return "~/" + strings.TrimPrefix(p, b.home+"/") }

// TestEscapeGitDirsNewSubmoduleKilledRun: a kill -9 of `aigate run`
// after its sandbox planted in a submodule it added does not skip the
// defusing: with an agent running, the agent does it when the session
// dies and it ends the sandbox; with the agent `sudo aigate run` embeds,
// which dies too, the next run's agent does it from its journal.
func TestEscapeGitDirsNewSubmoduleKilledRun(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	for _, kind := range []string{"agent", "embedded"} {
		t.Run(kind, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b0 *box) {
				b := b0
				if kind == "embedded" {
					b = passwdHomeBox(t, b0) // run --user takes the home from the user database
					t.Cleanup(func() {
						for _, f := range []string{".gitconfig", "subsrc", "cleansrc", "RAN-OUTSIDE"} {
							os.RemoveAll(filepath.Join(b.home, f))
						}
					})
				}
				prepareNewSubmodule(t, b)
				log := killedRun(t, b, kind, `git submodule add -q ../subsrc new && `+plantNewSubmodule(b)+` && echo planted > planted; exec sleep 120`,
					func(log string) {
						if !strings.Contains(b.read(".git/modules/new/config"), "fsmonitor") {
							t.Fatalf("the plant did not happen:\n%s", log)
						}
					})
				deadline := time.Now().Add(10 * time.Second)
				for strings.Contains(b.read(".git/modules/new/config"), "fsmonitor") && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				checkNewSubmoduleDefused(t, b)
				if t.Failed() {
					t.Logf("run:\n%s", log.String())
				}
			})
		})
	}
}

// TestEscapeGitDirsNewSymlink: a sandbox that makes the config of a git
// directory it added a link to a file of the user's outside (here
// ~/.gitconfig, whose protocol.allow and init.defaultBranch are keys the
// defusing removes) does not get aigate to rewrite that file: the link is
// moved aside as it is, the file untouched, and the same for a hooks link
// to a directory outside.
func TestEscapeGitDirsNewSymlink(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		prepareNewSubmodule(t, b)
		gitconfig := b.read("~/.gitconfig")
		b.write("~/bin/ls", "#!/bin/sh\n")
		r := b.sh(`git submodule add -q ../subsrc new && cd .git/modules/new &&
mv config config.real && ln -s ` + b.path("~/.gitconfig") + ` config && rm -rf hooks && ln -s ` + b.path("~/bin") + ` hooks && echo linked`)
		if !strings.Contains(r.stdout, "linked") {
			t.Fatalf("planting the links inside failed:\n%s", r)
		}
		if got := b.read("~/.gitconfig"); got != gitconfig {
			t.Errorf("aigate wrote through the link into ~/.gitconfig:\n%s\nwas:\n%s", got, gitconfig)
		}
		if _, err := os.Stat(b.path("~/bin/ls")); err != nil {
			t.Errorf("aigate moved a file of the directory a hooks link points at: %v", err)
		}
		for _, l := range []string{"config", "hooks"} {
			if fi, err := os.Lstat(b.path(".git/modules/new/" + l)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				t.Errorf("the %s link stayed in place", l)
			}
			aside, _ := filepath.Glob(b.path(".git/modules/new/" + l + ".aigate-*"))
			if len(aside) != 1 {
				t.Errorf("the %s link was not moved aside: %q", l, aside)
			} else if fi, err := os.Lstat(aside[0]); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s is not the link as it was: %v", aside[0], err)
			}
		}
		if !strings.Contains(r.stderr, "config: a link to "+b.path("~/.gitconfig")+", moved aside") {
			t.Errorf("run did not name the link it moved aside:\n%s", r)
		}
	})
}

// killedRun runs script in a sandbox (kind "agent": `aigate run` with
// the box's agent; "embedded": `sudo aigate run --user`, whose agent
// dies with it), waits for it to write "planted" in the project, kills
// run with SIGKILL (planted, when not nil, checks the plant first) and,
// for "embedded", runs the next embedded run, whose
// agent finds the dead one's journals. It returns run's output.
func killedRun(t *testing.T, b *box, kind, script string, planted func(log string)) *testutil.SyncBuffer {
	t.Helper()
	var run *exec.Cmd
	if kind == "agent" {
		run = b.asUser(exec.Command(machine.bin, "run", "--", "sh", "-c", script))
	} else {
		run = b.embeddedRun("sh", "-c", script)
	}
	log := &testutil.SyncBuffer{}
	run.Stdout, run.Stderr = log, log
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- run.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL) })
	// An embedded run starts its agent first, which loads the BPF LSM
	// programs: in the TCG guest under load that took more than runLimit
	// before the command's git submodule add was done (6.12 guest, load
	// ~33: twice past 2 minutes, 373 s for the whole subtest alone).
	testutil.WaitForFile(t, b.path("planted"), 2*runLimit, runDone, log)
	if planted != nil {
		planted(log.String())
	}
	if err := run.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-runDone
	if kind == "embedded" {
		next := b.embeddedRun("true")
		var out testutil.SyncBuffer
		next.Stdout, next.Stderr = &out, &out
		if _, err := e2e.ExitCode(e2e.RunBounded(next, runLimit)); err != nil {
			t.Fatalf("the next run: %v\n%s", err, out.String())
		}
	}
	return log
}
