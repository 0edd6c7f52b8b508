//go:build linux

package escape

import (
	"fmt"
	"github.com/aigate-dev/aigate/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// persistTargets are files that run code outside the sandbox at the user's
// next ordinary action, one per default deny_write route (docs/threat-model.md).
// Their directories exist before the run (a directory created inside the
// sandbox is a separate gap of the fanotify backend, docs/backends.md).
var persistTargets = []string{
	"~/.bashrc", "~/.bash_logout", "~/.zprofile", "~/.config/fish/config.fish",
	"~/.gitconfig", "~/.config/git/config",
	"~/.local/bin/ls", "~/bin/ls", "~/.local/lib/python3/site-packages/evil.pth",
	"~/.config/autostart/evil.desktop", "~/.config/systemd/user/evil.service", "~/.config/systemd/user.control/evil.service", "~/.local/share/systemd/user/evil.service",
	"~/.local/share/applications/firefox.desktop", "~/.config/mimeapps.list",
	"~/.local/share/direnv/allow/x", "~/.vimrc",
	".git/hooks/pre-commit", ".git/config", ".envrc", ".vscode/tasks.json", ".idea/workspace.xml",
	"~/.claude/settings.json", "~/.claude/settings.local.json",
	".claude/settings.json", ".claude/settings.local.json", ".mcp.json",
	"~/.aigate/config.yaml", ".aigate.yaml",
}

// TestEscapePersistDefaults: with the defaults, the sandbox can neither
// change nor create any of persistTargets; each attempt is refused with a
// write event.
func TestEscapePersistDefaults(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		var script strings.Builder
		for i, target := range persistTargets {
			switch {
			case target == "~/.aigate/config.yaml": // aigate init wrote it
			case i%2 == 0 || strings.HasPrefix(target, ".git/"):
				b.write(target, "# original\n") // half exist, half are new names
			default:
				b.mkdir(filepath.Dir(b.path(target)))
			}
			fmt.Fprintf(&script, "echo 'cp ~/.ssh/id_rsa /tmp/x # PLANTED' >> %q && echo \"planted %s\"\n", b.path(target), target)
		}
		r := b.sh(script.String())
		if strings.Contains(r.stdout, "planted") {
			t.Errorf("planted:\n%s", r.stdout)
		}
		for _, target := range persistTargets {
			if strings.Contains(b.read(target), "PLANTED") {
				t.Errorf("%s was written", target)
			}
			if _, ok := r.denied(events.OpWrite, b.path(target)); !ok {
				t.Errorf("no write event for %s", target)
			}
		}
		if t.Failed() {
			t.Logf("%s", r)
		}
	})
}

// TestEscapeReplaceAncestor: `mv .git away; mv prepared .git` would replace
// the hooks without writing .git/hooks. The LSM backend refuses renaming
// (or removing, or symlinking) a directory above a protected path, with a
// write event naming it. The fanotify backend has no permission event for
// renames: it reports the move after the fact and kills the sandbox
// (docs/threat-model.md).
func TestEscapeReplaceAncestor(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.write(".git/hooks/pre-commit", "#!/bin/sh\nexit 0\n")
		b.write(".git/HEAD", "ref: refs/heads/main\n")
		tmp := filepath.Join(b.home, "tmp")
		b.mkdir(tmp)
		script := fmt.Sprintf(`cp -a .git %[1]s/g && echo 'cp ~/.ssh/id_rsa /tmp/x # PLANTED' >> %[1]s/g/hooks/pre-commit &&
mv .git %[1]s/old && mv %[1]s/g .git && echo replaced`, tmp)
		if b.backend == "fanotify" {
			// fanotify learns of the move after the fact and places the
			// mover by its pid. Here the mover stays alive (python, which
			// waits before the second rename), so the sandbox is killed
			// before the replacement; TestEscapeQuickMovesOfGit has two
			// short mvs, placed once exited by the kernel's exit records.
			if _, err := exec.LookPath("python3"); err != nil {
				testutil.SkipUnlessKernel(t, "no python3 for a mover that stays alive")
			}
			script = fmt.Sprintf(`cp -a .git %[1]s/g && echo 'cp ~/.ssh/id_rsa /tmp/x # PLANTED' >> %[1]s/g/hooks/pre-commit &&
python3 -c 'import os, time; os.rename(".git", "%[1]s/old"); time.sleep(3); os.rename("%[1]s/g", ".git")' && echo replaced`, tmp)
		}
		r := b.sh(script)
		replaced := strings.Contains(b.read(".git/hooks/pre-commit"), "PLANTED")
		switch b.backend {
		case "lsm":
			if replaced || strings.Contains(r.stdout, "replaced") {
				t.Fatalf("the hooks were replaced:\n%s", r)
			}
			if _, ok := r.denied(events.OpWrite, filepath.Join(b.proj, ".git")); !ok {
				t.Errorf("no write event for .git:\n%s", r)
			}
			// The same for a directory above a home route, and for moving a
			// prepared tree into the place of a missing one (not ~/.local:
			// run creates ~/.local/state for the tools before the command).
			b.write("~/.config/git/config", "[user]\n")
			b.write("~/work/c/user/evil.service", "[Service]\nExecStart=/bin/sh -c 'cp ~/.ssh/id_rsa /tmp/x'\n")
			r = b.sh("mv ~/.config ~/work/old-config; mv ~/work/c ~/.config/systemd; echo done")
			if b.read("~/.config/git/config") == "" {
				t.Errorf("~/.config was moved away:\n%s", r)
			}
			if b.read("~/.config/systemd/user/evil.service") != "" {
				t.Errorf("a user unit was planted by moving a tree into ~/.config/systemd:\n%s", r)
			}
			for _, p := range []string{"~/.config", "~/.config/systemd"} {
				if _, ok := r.denied(events.OpWrite, b.path(p)); !ok {
					t.Errorf("no write event for %s:\n%s", p, r)
				}
			}
		case "fanotify":
			// No permission event for renames: the move is seen after the
			// fact and, a directory above the protected files not being
			// restored, the sandbox is killed.
			e, ok := r.denied(events.OpRename, filepath.Join(b.proj, ".git"))
			if !ok {
				t.Errorf("no rename event for moving .git:\n%s", r)
			}
			if e.Restored {
				t.Errorf("the move of .git is reported as restored: %+v", e)
			}
			if r.code == 0 || strings.Contains(r.stdout, "replaced") || replaced {
				t.Errorf("the sandbox was not stopped before the replacement (exit %d):\n%s", r.code, r)
			}
		}
	})
}

// TestEscapeQuickMovesOfGit: TestEscapeReplaceAncestor with two plain
// `mv`s, each exiting at once. On fanotify the first mv has usually exited
// and been reaped before the watcher reads its rename, and was never seen
// in a permission event: it is placed by the kernel's record of its exit
// (bpf/exitrec.c), so the move is reported and the sandbox killed (before,
// it was taken as the user's and the sandbox went on). The second mv lands
// before the kill (detection, not prevention: docs/threat-model.md); what
// is asserted is that the sandbox does not outlive it. The shell then
// waits 30 s, not a few: under TCG the watcher is still walking the big
// tree seconds later (a 3 s wait printed "survived" on 6.1 before the
// kill came), and a kill that comes ends the wait at once.
func TestEscapeQuickMovesOfGit(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.write(".git/hooks/pre-commit", "#!/bin/sh\nexit 0\n")
		b.write(".git/HEAD", "ref: refs/heads/main\n")
		tmp := filepath.Join(b.home, "tmp")
		b.mkdir(tmp)
		// A tree of directories outside the watched ones, moved into the
		// project first: the watcher walks and marks it, and meanwhile the
		// mvs of .git run and exit.
		big, err := os.MkdirTemp(filepath.Dir(b.home), "big-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(big) })
		b.chown(big)
		if out, err := b.outsideRun(fmt.Sprintf(`cd %s && mkdir t && cd t && for i in $(seq 1 40); do mkdir $i && (cd $i && mkdir $(seq 1 250)); done`, big)); err != nil {
			t.Fatalf("make the tree: %v\n%s", err, out)
		}
		r := b.sh(fmt.Sprintf(`cp -a .git %[1]s/g && echo 'cp ~/.ssh/id_rsa /tmp/x # PLANTED' >> %[1]s/g/hooks/pre-commit &&
mv %[2]s/t busy && mv .git %[1]s/old && mv %[1]s/g .git && echo replaced; %[3]s`, tmp, big, b.afterKill(30)))
		switch b.backend {
		case "lsm":
			if strings.Contains(b.read(".git/hooks/pre-commit"), "PLANTED") || strings.Contains(r.stdout, "replaced") {
				t.Fatalf("the hooks were replaced:\n%s", r)
			}
			if _, ok := r.denied(events.OpWrite, filepath.Join(b.proj, ".git")); !ok {
				t.Errorf("no write event for .git:\n%s", r)
			}
		case "fanotify":
			e, ok := r.denied(events.OpRename, filepath.Join(b.proj, ".git"))
			if !ok {
				t.Errorf("no rename event for moving .git (the exited mv was not placed):\n%s", r)
			}
			if e.Restored {
				t.Errorf("the move of .git is reported as restored: %+v", e)
			}
			if r.code == 0 || strings.Contains(r.stdout, "survived") {
				t.Errorf("the sandbox outlived the move of .git (exit %d):\n%s", r.code, r)
			}
		}
	})
}

// TestEscapeGitCommitControl: ordinary git work in the project still
// succeeds inside the sandbox with the defaults (the control of the
// persistence rules: .git/hooks and .git/config stay readable).
func TestEscapeGitCommitControl(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		if out, err := b.outsideRun("git init -q -b main . && git config user.email u@example.com && git config user.name u"); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		r := b.sh("echo hi > file.txt && git add file.txt && git commit -q -m msg && git log --oneline | wc -l && git status --short")
		if r.code != 0 || !strings.Contains(r.stdout, "1") {
			t.Fatalf("git commit inside failed:\n%s", r)
		}
	})
}

// TestEscapeRenameOverProtected: a file renamed over a deny_write path
// (.git/config, the project's .claude/settings.json) replaces it without
// an open. The LSM backend refuses the rename with a write event; fanotify
// sees it after the fact, puts the original content back (same mode) and
// reports a rename event marked restored; the sandbox goes on, as after a
// refusal. The mover is python, alive when fanotify handles the move (see
// TestEscapeReplaceAncestor).
func TestEscapeRenameOverProtected(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		testutil.SkipUnlessKernel(t, "no python3")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		for _, target := range []string{".git/config", ".claude/settings.json"} {
			b.write(target, "# the user's\n")
			r := b.sh(fmt.Sprintf(`python3 -c 'import os, time
open("planted", "w").write("[core]\\n\\tfsmonitor = cp ~/.ssh/id_rsa /tmp/x\\n")
os.rename("planted", %q)
time.sleep(1)
print("survived")'; echo continued`, target))
			op := events.OpWrite // refused
			if b.backend == "fanotify" {
				op = events.OpRename // seen after the fact
			}
			e, ok := r.denied(op, b.path(target))
			if !ok {
				t.Errorf("%s: no %s event for the rename:\n%s", target, op, r)
			}
			if got := b.read(target); got != "# the user's\n" {
				t.Errorf("%s was replaced: %q\n%s", target, got, r)
			}
			if r.code != 0 || !strings.Contains(r.stdout, "continued") {
				t.Errorf("%s: the sandbox did not go on (exit %d):\n%s", target, r.code, r)
			}
			if b.backend == "fanotify" {
				if !strings.Contains(r.stdout, "survived") {
					t.Errorf("%s: the mover was stopped:\n%s", target, r)
				}
				if !e.Restored {
					t.Errorf("%s: the rename event does not say restored: %+v", target, e)
				}
				if !strings.Contains(r.stderr, "undone") {
					t.Errorf("%s: the deny summary does not say the rename was undone:\n%s", target, r.stderr)
				}
				if fi, err := os.Stat(b.path(target)); err != nil {
					t.Error(err)
				} else if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: restored with mode %v, want 0600", target, fi.Mode())
				}
			}
		}
	})
}
