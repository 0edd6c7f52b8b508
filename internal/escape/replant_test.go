//go:build linux

package escape

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// replantTries is how many times each replacement of .git is tried: the
// race between the copy and the watcher's kill is lost by the copy only
// sometimes (cp), or never (mv), and a sweep that missed one try fails.
const replantTries = 6

// TestEscapeReplantGit: a prepared .git, with a planted pre-commit hook, a
// new post-commit hook and a core.fsmonitor in its config, put in place of
// the project's as fast as a shell can: `rm -rf .git && cp -a g .git`
// (cp), `mv .git x && mv g .git` (mv: two renames, often ahead of the
// watcher) or one renameat2(RENAME_EXCHANGE) of .git and the prepared
// tree (exchange: always ahead; ended: the same as the session's last
// command), replantTries times each. LSM refuses the unlink of the hook
// and the rename of .git outright. fanotify sees both after the fact and
// kills the sandbox, and then (sweep.go) the protected places of the new
// .git are swept: the hook and config put back from the agent's copies,
// the new hook moved aside to .aigate-quarantine, an event (op planted)
// for each entry moved. Asserted after every try: the user's next `git
// commit`, outside the sandbox, runs none of it, and the files git reads
// are the user's. Without the sweep the exchange variant plants in every
// try, the others in some.
func TestEscapeReplantGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		testutil.SkipUnlessKernel(t, "no python3 for renameat2")
	}
	attacks := map[string]string{
		"cp":       `rm -rf .git && cp -a %[1]s/g .git && echo replaced && sleep 30 && echo survived`,
		"mv":       `mv .git %[1]s/old && mv %[1]s/g .git && echo replaced && sleep 30 && echo survived`,
		"exchange": exchangeGit + ` && echo replaced && sleep 30 && echo survived`,
		// The session ends at once: the watcher may read the exchange only
		// as the sandbox is removed, which waits for the sweep.
		"ended": exchangeGit,
	}
	for _, name := range []string{"cp", "mv", "exchange", "ended"} {
		t.Run(name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b *box) {
				tmp := filepath.Join(b.home, "tmp")
				b.mkdir(tmp)
				pwned := filepath.Join(b.home, "pwned")
				hook, config := initRepo(t, b)
				landed := 0
				for try := range replantTries {
					os.RemoveAll(filepath.Join(tmp, "g"))
					os.RemoveAll(filepath.Join(tmp, "old"))
					if _, err := os.Lstat(b.path(".git")); err != nil {
						// Removed or moved away, and killed before the
						// copy: the user's repository made again.
						hook, config = initRepo(t, b)
					}
					prepare := fmt.Sprintf(`cp -a .git %[1]s/g && mkdir -p %[1]s/g/hooks &&
printf '#!/bin/sh\ntouch %[2]s.pre\n' > %[1]s/g/hooks/pre-commit &&
printf '#!/bin/sh\ntouch %[2]s.post\n' > %[1]s/g/hooks/post-commit && chmod +x %[1]s/g/hooks/* &&
printf '[core]\n\tfsmonitor = touch %[2]s.fsmonitor; false\n' >> %[1]s/g/config`, tmp, pwned)
					if out, err := b.outsideRun(prepare); err != nil {
						t.Fatalf("prepare: %v\n%s", err, out)
					}
					r := b.sh(fmt.Sprintf(attacks[name], tmp))
					// Whatever is where git reads it must be the user's (a
					// .git removed before the copy landed holds nothing).
					planted := b.differs(".git/hooks/pre-commit", hook) || b.differs(".git/config", config) ||
						b.differs(".git/hooks/post-commit", "")
					if b.backend == "lsm" {
						if strings.Contains(r.stdout, "replaced") || planted {
							t.Fatalf("try %d: .git was replaced:\n%s", try, r)
						}
						if _, ok := r.denied(events.OpWrite, b.path(".git")); !ok {
							t.Errorf("try %d: no write event for .git:\n%s", try, r)
						}
						continue
					}
					if strings.Contains(r.stdout, "survived") {
						t.Errorf("try %d: the sandbox outlived the replacement:\n%s", try, r)
					}
					if planted {
						t.Errorf("try %d: planted content left where git reads it: pre-commit %q, post-commit %q, config %q\n%s",
							try, b.read(".git/hooks/pre-commit"), b.read(".git/hooks/post-commit"), b.read(".git/config"), r)
					}
					out, err := b.outsideRun(`git commit -q --allow-empty -m next`)
					for _, s := range []string{".pre", ".post", ".fsmonitor"} {
						if _, serr := os.Lstat(pwned + s); serr == nil {
							t.Errorf("try %d: the user's git commit outside ran the planted %s (commit: %v %s)\n%s", try, s, err, out, r)
							os.Remove(pwned + s)
						}
					}
					_, swept := r.denied(events.OpPlanted, b.path(".git"))
					if !swept && (name == "exchange" || name == "ended") {
						// One renameat2: the prepared tree is always in place first.
						t.Errorf("try %d: no planted event for the exchanged .git:\n%s", try, r)
					}
					if swept {
						landed++
						// From the first event (the kill) to the sweep's last.
						last := r.events[0].Time
						for _, e := range r.events {
							if e.Time.After(last) {
								last = e.Time
							}
						}
						t.Logf("try %d: swept %v after the first event", try, last.Sub(r.events[0].Time))
					}
					if strings.Contains(r.stdout, "replaced") {
						// The copy landed: what was moved aside is reported.
						if _, ok := r.denied(events.OpPlanted, b.path(".git/hooks/post-commit")); !ok {
							t.Errorf("try %d: no planted event for the new hook:\n%s", try, r)
						}
					}
					t.Logf("try %d: the shell went on past the replacement: %v; events: %d", try, strings.Contains(r.stdout, "replaced"), len(r.events))
				}
				t.Logf("%s: planted entries moved aside after the kill in %d of %d tries", name, landed, replantTries)
			})
		})
	}
}

// TestEscapeReplantSymlinks: the prepared .git's hooks is a symlink to
// ~/.ssh and its config one to ~/.ssh/config. Following either, a root
// agent putting the hooks back would write into ~/.ssh, and moving
// "the planted hooks" aside would move ~/.ssh. fanotify's sweep moves
// the symlinks themselves aside, makes .git/hooks again and puts the
// hook back in it; ~/.ssh is untouched. (LSM refuses the rename.)
func TestEscapeReplantSymlinks(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		testutil.SkipUnlessKernel(t, "no python3 for renameat2")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		tmp := filepath.Join(b.home, "tmp")
		b.mkdir(tmp)
		hook, config := initRepo(t, b)
		const key, sshConfig = "PRIVATE KEY\n", "Host *\n"
		b.write("~/.ssh/id_rsa", key)
		b.write("~/.ssh/config", sshConfig)
		ssh := b.path("~/.ssh")
		prepare := fmt.Sprintf(`cp -a .git %[1]s/g && rm -rf %[1]s/g/hooks %[1]s/g/config &&
ln -s %[2]s %[1]s/g/hooks && ln -s %[2]s/config %[1]s/g/config`, tmp, ssh)
		if out, err := b.outsideRun(prepare); err != nil {
			t.Fatalf("prepare: %v\n%s", err, out)
		}
		r := b.sh(fmt.Sprintf(exchangeGit+` && echo replaced && sleep 30 && echo survived`, tmp))
		list, _ := os.ReadDir(ssh)
		var names []string
		for _, e := range list {
			names = append(names, e.Name())
		}
		if strings.Join(names, " ") != "config id_rsa" || b.read("~/.ssh/id_rsa") != key || b.read("~/.ssh/config") != sshConfig {
			t.Errorf("~/.ssh changed: %v, config %q\n%s", names, b.read("~/.ssh/config"), r)
		}
		if fi, err := os.Lstat(ssh); err != nil || !fi.IsDir() {
			t.Errorf("~/.ssh is no longer a directory: %v %v", fi, err)
		}
		if b.backend == "lsm" {
			if strings.Contains(r.stdout, "replaced") {
				t.Fatalf(".git was replaced:\n%s", r)
			}
			return
		}
		if strings.Contains(r.stdout, "survived") {
			t.Errorf("the sandbox outlived the replacement:\n%s", r)
		}
		for _, p := range []string{".git/hooks", ".git/config"} {
			if fi, err := os.Lstat(b.path(p)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				t.Errorf("%s is still the planted symlink\n%s", p, r)
			}
		}
		if got := b.read(".git/hooks/pre-commit"); got != hook {
			t.Errorf(".git/hooks/pre-commit: %q, want the user's %q\n%s", got, hook, r)
		}
		if got := b.read(".git/config"); got != config {
			t.Errorf(".git/config: %q, want the user's %q\n%s", got, config, r)
		}
		for _, p := range []string{".git/hooks", ".git/config"} {
			e, ok := r.denied(events.OpPlanted, b.path(p))
			if !ok || !strings.Contains(e.MovedTo, filepath.Join(b.proj, ".aigate-quarantine")) {
				t.Errorf("no planted event moving %s aside into the project's quarantine (%+v)\n%s\nagent: %s", p, e, r, b.agent.log.String())
			}
		}
	})
}

// exchangeGit swaps .git and %[1]s/g in one renameat2(RENAME_EXCHANGE):
// the prepared tree is in place before the watcher can see anything.
const exchangeGit = `python3 -c 'import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.renameat2(-100, b".git", -100, sys.argv[1].encode(), 2) != 0:
    sys.exit(os.strerror(ctypes.get_errno()))' %[1]s/g`

// differs reports whether the file at rel exists with other content than
// want.
func (b *box) differs(rel, want string) bool {
	data, err := os.ReadFile(b.path(rel))
	return err == nil && string(data) != want
}

// initRepo makes the project a git repository of the user's, outside any
// sandbox, with a pre-commit hook that does nothing; it returns the
// hook's and the config's content.
func initRepo(t *testing.T, b *box) (hook, config string) {
	t.Helper()
	out, err := b.outsideRun(`git init -q -b main . && git config user.email u@example.com && git config user.name u &&
mkdir -p .git/hooks && printf '#!/bin/sh\nexit 0\n' > .git/hooks/pre-commit && chmod 755 .git/hooks/pre-commit && rm -f .git/hooks/*.sample &&
git commit -q --allow-empty -m first`)
	if err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	return b.read(".git/hooks/pre-commit"), b.read(".git/config")
}
