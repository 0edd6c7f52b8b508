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

// TestEscapeEnvMoved: where the user's profile moves a protected file
// with the program's own variable, each run names the policy's rules
// there again (run.followEnv). With AWS_SHARED_CREDENTIALS_FILE the
// access keys, with GH_CONFIG_DIR gh's token, are refused with read
// events; with GIT_CONFIG_GLOBAL a core.fsmonitor planted in git's global
// config is refused with a write event and git outside runs nothing, and
// so is a line appended to zsh's .zshrc where ZDOTDIR moves it. The
// control: git inside reads that config and works. The files are in the
// harness's home, which the sandbox may write (it lies in /tmp, where
// Landlock cannot keep it read-only, as it cannot anything outside the
// home), as on a kernel without Landlock, where the LSM backend runs
// without it: the run's rules are all that protect them. Before, only the defaults (~/.aws/, ~/.config/gh/,
// ~/.gitconfig) were protected.
func TestEscapeEnvMoved(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		gitcfg, ghdir, creds := b.path("~/dotfiles/gitconfig"), b.path("~/gh-work"), b.path("~/data/aws-creds")
		zshrc := b.path("~/zdot/.zshrc")
		b.env = append(b.env, "GIT_CONFIG_GLOBAL="+gitcfg, "GH_CONFIG_DIR="+ghdir, "AWS_SHARED_CREDENTIALS_FILE="+creds, "ZDOTDIR="+b.path("~/zdot"))
		b.write("~/zdot/.zshrc", "# the user's\n")
		b.write("~/dotfiles/gitconfig", "[user]\n\tname = u\n\temail = u@example.com\n[init]\n\tdefaultBranch = main\n")
		b.write("~/gh-work/hosts.yml", "github.com:\n    oauth_token: gho_env-moved-token\n")
		b.write("~/data/aws-creds", "[default]\naws_secret_access_key = env-moved-secret\n")
		if out, err := b.outsideRun("git init -q . && echo a > a && git add a && git commit -q -m a"); err != nil {
			t.Fatalf("preparing the repository: %v\n%s", err, out)
		}

		marker := filepath.Join(b.home, "RAN-OUTSIDE")
		// The paths are written out: deny_env may keep the variables
		// from the command, not the files from a reader who knows them.
		r := b.sh(`git status --short >/dev/null && git config --global user.name && echo git-ok
if printf '[core]\n\tfsmonitor = "touch ` + marker + `; false"\n' >> '` + gitcfg + `' 2>/dev/null; then echo WROTE; else echo REFUSED; fi
if echo 'cp ~/.ssh/id_rsa /tmp/x' >> '` + zshrc + `' 2>/dev/null; then echo ZWROTE; else echo ZREFUSED; fi
cat '` + creds + `'; cat '` + ghdir + `/hosts.yml'; echo survived`)
		if !strings.Contains(r.stdout, "survived") {
			t.Fatalf("the run did not get that far:\n%s", r)
		}
		if !strings.Contains(r.stdout, "u\ngit-ok") {
			t.Errorf("the control failed: git inside did not read its config:\n%s", r)
		}
		if !strings.Contains(r.stderr, "$GIT_CONFIG_GLOBAL (") || !strings.Contains(r.stderr, "$AWS_SHARED_CREDENTIALS_FILE (") {
			t.Errorf("run's line does not name what it followed:\n%s", r.stderr)
		}
		if !strings.Contains(r.stdout, "REFUSED\n") || strings.Contains(b.read("~/dotfiles/gitconfig"), "fsmonitor") {
			t.Errorf("git's global config was written:\n%s", r)
		}
		if _, ok := r.denied(events.OpWrite, gitcfg); !ok {
			t.Errorf("no write event for %s:\n%s", gitcfg, r)
		}
		// zsh's startup files where ZDOTDIR moves them: the user's next
		// shell would run what the sandbox appended.
		if !strings.Contains(r.stdout, "ZREFUSED\n") || b.read("~/zdot/.zshrc") != "# the user's\n" {
			t.Errorf("$ZDOTDIR/.zshrc was written:\n%s", r)
		}
		if _, ok := r.denied(events.OpWrite, zshrc); !ok {
			t.Errorf("no write event for %s:\n%s", zshrc, r)
		}
		for secret, file := range map[string]string{"env-moved-secret": creds, "gho_env-moved-token": ghdir + "/hosts.yml"} {
			if strings.Contains(r.stdout, secret) {
				t.Errorf("%s was read:\n%s", file, r)
			}
			if _, ok := r.denied(events.OpRead, file); !ok {
				t.Errorf("no read event for %s:\n%s", file, r)
			}
		}
		// The user's next git status, outside, with the same profile.
		if out, err := b.outsideRun("git status --short"); err != nil {
			t.Errorf("git status outside: %v\n%s", err, out)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("git outside ran the planted core.fsmonitor")
		}
	})
}
