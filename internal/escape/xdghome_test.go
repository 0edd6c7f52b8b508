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

// TestEscapeXDGConfigHome: where the user's profile sets $XDG_CONFIG_HOME
// and $XDG_DATA_HOME, git reads its config, gh its token, the desktop its
// autostart entries and the user's systemd manager its units there
// instead of beneath ~/.config and ~/.local/share, and each run names the
// policy's rules there again (run.followEnv). A core.fsmonitor planted in
// $XDG_CONFIG_HOME/git/config, an autostart entry and a user unit are
// refused with write events and git outside runs nothing; gh's token is
// refused with a read event. The control: a tool's own state in
// $XDG_CONFIG_HOME (no rule names it) stays writable, and git inside
// works. The directories are in the harness's home, which the sandbox
// may write (it lies in /tmp, where Landlock cannot keep it read-only),
// so the run's rules are all that protect them. Before, only
// $XDG_DATA_HOME/applications was followed.
func TestEscapeXDGConfigHome(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testutil.SkipUnlessKernel(t, "git is not installed")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		cfg, data := b.path("~/.xdg-config"), b.path("~/.xdg-data")
		b.env = append(b.env, "XDG_CONFIG_HOME="+cfg, "XDG_DATA_HOME="+data)
		b.write("~/.xdg-config/git/config", "[user]\n\tname = u\n\temail = u@example.com\n[init]\n\tdefaultBranch = main\n")
		b.write("~/.xdg-config/gh/hosts.yml", "github.com:\n    oauth_token: gho_escape-test-token\n")
		b.write("~/.xdg-config/autostart/.keep", "")
		b.write("~/.xdg-data/systemd/user/.keep", "")
		b.write("~/.xdg-config/sometool/state.json", "{}\n")
		if out, err := b.outsideRun("git init -q . && echo a > a && git add a && git commit -q -m a"); err != nil {
			t.Fatalf("preparing the repository: %v\n%s", err, out)
		}

		rc := b.sh(`echo '{"n":1}' > "$XDG_CONFIG_HOME/sometool/state.json" &&
mkdir -p "$XDG_CONFIG_HOME/sometool/cache" && echo x > "$XDG_CONFIG_HOME/sometool/cache/y" &&
mkdir -p "$XDG_CONFIG_HOME/newtool" && echo x > "$XDG_CONFIG_HOME/newtool/state" && echo tool-ok
echo b > b && git add b && git commit -q -m b && git status --short >/dev/null && echo git-ok`)
		for _, want := range []string{"tool-ok", "git-ok"} {
			if !strings.Contains(rc.stdout, want) {
				t.Errorf("the control failed (%s):\n%s", want, rc)
			}
		}
		for _, e := range rc.events {
			if strings.HasPrefix(e.Path, cfg) {
				t.Errorf("an event for the tool's own state: %+v", e)
			}
		}
		if got := b.read("~/.xdg-config/sometool/state.json"); got != "{\"n\":1}\n" {
			t.Errorf("the tool's state was not written: %q", got)
		}

		marker := filepath.Join(b.home, "RAN-OUTSIDE")
		plants := []plant{
			{"git config", `printf '[core]\n\tfsmonitor = "touch ` + marker + `; false"\n' >> "$XDG_CONFIG_HOME/git/config"`, "~/.xdg-config/git/config"},
			{"autostart", `printf '[Desktop Entry]\nExec=sh -c PLANTED\n' > "$XDG_CONFIG_HOME/autostart/evil.desktop"`, "~/.xdg-config/autostart/evil.desktop"},
			{"user unit", `printf '[Service]\nExecStart=/bin/sh -c PLANTED\n' > "$XDG_DATA_HOME/systemd/user/evil.service"`, "~/.xdg-data/systemd/user/evil.service"},
		}
		var script strings.Builder
		for _, p := range plants {
			script.WriteString("if (" + p.cmd + ") 2>/dev/null; then echo 'WROTE " + p.name + "'; else echo 'REFUSED " + p.name + "'; fi\n")
		}
		script.WriteString(`cat "$XDG_CONFIG_HOME/gh/hosts.yml"; echo survived` + "\n")
		r := b.sh(script.String())
		if !strings.Contains(r.stdout, "survived") {
			t.Errorf("the run did not get that far:\n%s", r)
		}
		for _, p := range plants {
			if !strings.Contains(r.stdout, "REFUSED "+p.name+"\n") {
				t.Errorf("%s: the write went through: %s", p.name, p.cmd)
			}
			if strings.Contains(b.read(p.target), "PLANTED") || strings.Contains(b.read(p.target), "fsmonitor") {
				t.Errorf("%s: %s was written", p.name, p.target)
			}
			if _, ok := r.denied(events.OpWrite, b.path(p.target)); !ok {
				t.Errorf("%s: no write event for %s:\n%s", p.name, p.target, r)
			}
		}
		if strings.Contains(r.stdout, "gho_escape-test-token") {
			t.Errorf("gh's token was read:\n%s", r)
		}
		if _, ok := r.denied(events.OpRead, b.path("~/.xdg-config/gh/hosts.yml")); !ok {
			t.Errorf("no read event for gh's hosts.yml:\n%s", r)
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

// TestEscapeXDGExceptRead: an except_read entry of the user's beneath
// ~/.config follows $XDG_CONFIG_HOME as the deny rules do, so that the
// name and glob rules (*.key) deny no more there than the user meant:
// the tool's key in $XDG_CONFIG_HOME/sometool is readable, another tool's
// key there is still refused with a read event.
func TestEscapeXDGExceptRead(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		cfg := b.path("~/.xdg-config")
		b.env = append(b.env, "XDG_CONFIG_HOME="+cfg)
		yaml := b.read("~/.aigate/config.yaml")
		loose := strings.Replace(yaml, "except_read:\n", "except_read:\n  - ~/.config/sometool/\n", 1)
		if loose == yaml {
			t.Fatal("the defaults have no except_read list as this test expects")
		}
		b.config(loose)
		b.write("~/.xdg-config/sometool/client.key", "public-by-the-user's-word\n")
		b.write("~/.xdg-config/other/client.key", "sk-other-secret\n")
		r := b.sh(`cat "$XDG_CONFIG_HOME/sometool/client.key"; cat "$XDG_CONFIG_HOME/other/client.key"; echo survived`)
		if !strings.Contains(r.stdout, "public-by-the-user's-word") {
			t.Errorf("the excepted file was not readable:\n%s", r)
		}
		if strings.Contains(r.stdout, "sk-other-secret") {
			t.Errorf("the other key was read:\n%s", r)
		}
		if _, ok := r.denied(events.OpRead, b.path("~/.xdg-config/other/client.key")); !ok {
			t.Errorf("no read event for the other key:\n%s", r)
		}
		if _, ok := r.denied(events.OpRead, b.path("~/.xdg-config/sometool/client.key")); ok {
			t.Errorf("a read event for the excepted key:\n%s", r)
		}
	})
}
