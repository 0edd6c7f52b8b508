//go:build linux

package escape

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// homesParent holds the homes of this file's tests. Not beneath /tmp:
// Landlock cannot keep a home beneath a shared temp directory read-only
// (landlock.Plan), and the harness's homes live there.
var homesParent = filepath.Join("/var/lib", "aigate-escape-homes")

// homeBox is b's machine with a fresh home outside every temp directory.
func homeBox(t *testing.T, b *box) *box {
	t.Helper()
	if err := os.MkdirAll(homesParent, 0o755); err != nil {
		t.Fatal(err)
	}
	home, err := os.MkdirTemp(homesParent, "home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(home)
		os.Remove(homesParent) // the last test's cleanup removes it
	})
	h := &box{t: t, backend: b.backend, agent: b.agent, home: home, proj: filepath.Join(home, "proj"),
		events: filepath.Join(home, "events.jsonl")}
	h.mkdir(home)
	h.mkdir(h.proj)
	h.aigate("init")
	return h
}

// homeProtected says whether the home is read-only inside this backend's
// sandboxes: wherever the kernel has Landlock. Without it the fanotify
// backend refuses to run, and the LSM backend runs and warns that the home
// stays writable (checked below).
func homeProtected() bool { return landlock.ABI() > 0 }

// TestEscapeHomePersistence: nothing planted in the home runs outside the
// sandbox at the user's next ordinary action, because the home is
// read-only inside except the project and the tools' state. The test
// asserts the failures and that the files outside are untouched (the
// events of Landlock's refusals: TestEscapeLandlockRefusals).
func TestEscapeHomePersistence(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		b := homeBox(t, b0)
		b.write("~/.bashrc", "# the user's\n")
		b.write("~/.profile", "# the user's\n")
		b.write("~/.local/lib/python3/site-packages/.keep", "")
		b.write("~/.config/.keep", "")
		b.write("~/.claude/settings.json", "{}\n")
		b.write("~/.claude/projects/.keep", "")
		attacks := map[string]string{
			"bashrc":    `echo 'cp ~/.ssh/id_rsa /tmp/x' >> ~/.bashrc`,
			"profile":   `echo evil > ~/.profile.new && mv ~/.profile.new ~/.profile`,
			"localbin":  `mkdir -p ~/.local/bin && printf '#!/bin/sh\necho pwned\n' > ~/.local/bin/ls`,
			"bin":       `mkdir ~/bin`,
			"gitconfig": `git config --global core.fsmonitor 'cp ~/.ssh/id_rsa /tmp/x'`,
			"gitdir":    `mkdir -p ~/.config/git && echo '[core]' > ~/.config/git/config`,
			"pth":       `echo 'import os; os.system("id")' > ~/.local/lib/python3/site-packages/evil.pth`,
			"autostart": `mkdir -p ~/.config/autostart && echo x > ~/.config/autostart/x.desktop`,
			"systemd":   `mkdir -p ~/.config/systemd/user && echo x > ~/.config/systemd/user/x.service`,
			"fish":      `mkdir -p ~/.config/fish && echo x > ~/.config/fish/config.fish`,
			"aigate":    `mv ~/.aigate ~/.aigate-old`,
			"aigatenew": `rm -rf ~/.aigate/config.yaml`,
			"hardlink":  `ln ~/.bashrc rc && echo evil >> rc`,
			"symlink":   `ln -s ~/.bashrc rc2 && echo evil >> rc2`,
			// ~/.claude is tool state, but its own entries are fixed: a
			// protected file there cannot be replaced without an open.
			"claudemv":  `echo '{"hooks":{}}' > ~/.claude/evil.json && mv ~/.claude/evil.json ~/.claude/settings.json`,
			"claudesub": `echo '{"hooks":{}}' > ~/.claude/projects/e && mv ~/.claude/projects/e ~/.claude/settings.local.json`,
			"claudesym": `ln -s /tmp/evil.json ~/.claude/settings.local.json`,
			"claudeget": `mv ~/.claude/projects ~/.claude/p2`,
			"claudedir": `mv ~/.claude ~/.claude-old`,
		}
		var script strings.Builder
		for name, cmd := range attacks {
			script.WriteString("if (" + cmd + ") 2>/dev/null; then echo 'WROTE " + name + "'; else echo 'REFUSED " + name + "'; fi\n")
		}
		r := b.sh(script.String())
		if r.code != 0 {
			t.Fatalf("the attacks did not run:\n%s", r)
		}
		if !homeProtected() {
			if b.backend != "lsm" || !strings.Contains(r.stderr, "home stays writable") {
				t.Fatalf("no Landlock, and run did not say the home stays writable:\n%s", r)
			}
			return
		}
		for name := range attacks {
			if !strings.Contains(r.stdout, "REFUSED "+name+"\n") {
				t.Errorf("%s: the write went through: %q", name, attacks[name])
			}
		}
		if got := b.read("~/.bashrc"); got != "# the user's\n" {
			t.Errorf("~/.bashrc changed: %q", got)
		}
		if got := b.read("~/.claude/settings.json"); got != "{}\n" {
			t.Errorf("~/.claude/settings.json changed: %q", got)
		}
		// mv falls back to a copy when Landlock refuses the rename; the
		// copy's open is refused by deny_write (on fanotify after the
		// kernel created the file: an empty file stays, docs/backends.md).
		if got := b.read("~/.claude/settings.local.json"); got != "" {
			t.Errorf("~/.claude/settings.local.json planted: %q", got)
		}
		if got := b.read("~/.profile"); got != "# the user's\n" {
			t.Errorf("~/.profile changed: %q", got)
		}
		for _, p := range []string{"~/.local/bin/ls", "~/bin", "~/.config/git", "~/.gitconfig", "~/.aigate-old",
			"~/.local/lib/python3/site-packages/evil.pth", "~/.config/autostart", "~/.config/systemd", "~/.config/fish", "~/.claude-old"} {
			if _, err := os.Lstat(b.path(p)); err == nil {
				t.Errorf("%s was created", p)
			}
		}
		if _, err := os.Stat(b.path("~/.aigate/config.yaml")); err != nil {
			t.Errorf("~/.aigate/config.yaml: %v", err)
		}
		if t.Failed() {
			t.Logf("%s", r)
		}
	})
}

// TestEscapeHomeWorkStillWorks is the control: with the home read-only,
// ordinary work inside goes on: the project, temp files, the tools' state
// in the home, git commit, go build and test, a Python venv.
func TestEscapeHomeWorkStillWorks(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		homeWork(t, homeBox(t, b0))
	})
}

// TestEscapeXDGHomeWorkStillWorks is the same control where the user's
// profile sets XDG_CONFIG_HOME and XDG_DATA_HOME (git's config in the
// one, the policy's rules followed into both): git, go, pip and npm
// inside work as without them.
func TestEscapeXDGHomeWorkStillWorks(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		b := homeBox(t, b0)
		b.write("~/cfg/git/config", "[user]\n\tname = u\n\temail = u@example.com\n")
		b.write("~/data/.keep", "")
		b.env = append(b.env, "XDG_CONFIG_HOME="+b.path("~/cfg"), "XDG_DATA_HOME="+b.path("~/data"), "XDG_STATE_HOME="+b.path("~/state"))
		r := homeWork(t, b)
		if !strings.Contains(r.stderr, "$XDG_CONFIG_HOME (~/cfg), $XDG_DATA_HOME (~/data)") {
			t.Errorf("run did not say it follows the XDG directories:\n%s", r)
		}
	})
}

// TestEscapeXDGStateHome: the tool state that follows $XDG_STATE_HOME
// and $XDG_CONFIG_HOME stays tool state. A profile that points
// XDG_STATE_HOME at the home itself, or at ~/.local, does not make the
// home, or ~/.local/bin, writable inside: the home stays read-only, with
// a reported refusal.
func TestEscapeXDGStateHome(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		if !homeProtected() {
			testutil.SkipUnlessKernel(t, "no Landlock: the home is writable on this kernel (TestEscapeHomePersistence)")
		}
		for _, state := range []string{"~", "~/.local"} {
			b := homeBox(t, b0)
			b.env = append(b.env, "XDG_STATE_HOME="+b.path(state), "XDG_CONFIG_HOME="+b.path("~"))
			r := b.sh(`echo planted > ~/planted; mkdir -p ~/.local/bin && echo x > ~/.local/bin/ls; echo ran`)
			if !strings.Contains(r.stdout, "ran") {
				t.Fatalf("XDG_STATE_HOME=%s: the attempt did not run:\n%s", state, r)
			}
			for _, p := range []string{"~/planted", "~/.local/bin/ls"} {
				if _, err := os.Lstat(b.path(p)); err == nil {
					t.Errorf("XDG_STATE_HOME=%s: %s was written:\n%s", state, p, r)
				}
			}
			if !strings.Contains(r.stderr, "blocked write "+b.path("~/planted")) {
				t.Errorf("XDG_STATE_HOME=%s: no refusal reported for ~/planted:\n%s", state, r)
			}
		}
	})
}

// homeWork runs the ordinary work of TestEscapeHomeWorkStillWorks in b
// and checks it went on.
func homeWork(t *testing.T, b *box) result {
	// Claude Code's transcripts: made and appended to, in the run's
	// own project directory only (measured with strace, 2.1.332).
	own := "~/.claude/projects/" + claudestate.Sanitize(b.proj)
	script := `set -e
echo work > notes.txt && mv notes.txt notes2.txt && rm notes2.txt
t=$(mktemp) && echo x > "$t" && rm "$t"
test "$XDG_CACHE_HOME" = ~/.cache/aigate/xdg && mkdir -p "$XDG_CACHE_HOME/tool" && echo state > "$XDG_CACHE_HOME/tool/s" && mv "$XDG_CACHE_HOME/tool/s" "$XDG_CACHE_HOME/tool/s2"
st=${XDG_STATE_HOME:-$HOME/.local/state} && mkdir -p "$st/tool" && echo state > "$st/tool/s" && mv "$st/tool/s" "$st/tool/s2"
echo x >> ~/.claude/history.jsonl && echo 1 > ~/.claude/.last-cleanup
mkdir -p ~/.claude/sessions/p ~/.claude/tasks/t && echo s > ~/.claude/sessions/p/s.tmp && mv ~/.claude/sessions/p/s.tmp ~/.claude/sessions/p/s && rm ~/.claude/sessions/p/s
echo n > ~/.claude/tasks/t/n
mkdir -p ` + own + `/s/subagents && echo s >> ` + own + `/s.jsonl && echo a > ` + own + `/s/subagents/a.jsonl
echo ok-basic
`
	if git, err := exec.LookPath("git"); err == nil {
		// The repository exists before the session, as a user's does:
		// the default policy protects .git/config (and its .lock), so
		// `git init` inside would be refused, by design.
		if out, err := b.outsideRun(git + " init -q ."); err != nil {
			t.Fatalf("git init outside: %v\n%s", err, out)
		}
		script += git + ` -c user.name=t -c user.email=t@t add -A && ` +
			git + ` -c user.name=t -c user.email=t@t commit -qm first --allow-empty && echo ok-git
`
	}
	if gobin, err := exec.LookPath("go"); err == nil {
		b.write("mod/go.mod", "module example.com/m\n\ngo 1.21\n")
		b.write("mod/m.go", "package main\n\nfunc main() { println(\"hi\") }\n")
		b.write("mod/m_test.go", "package main\n\nimport \"testing\"\n\nfunc TestM(t *testing.T) {}\n")
		// go on the PATH, as a user's: run then makes go's telemetry
		// directory, which a go that never ran outside would make at its
		// first command (one refusal per compile inside).
		b.env = append(b.env, "PATH="+filepath.Dir(gobin)+":/usr/local/bin:/usr/bin:/bin")
		script += `cd mod && GOTOOLCHAIN=local GOFLAGS=-mod=mod ` + gobin + ` build -o m . && ./m && GOTOOLCHAIN=local ` + gobin + ` test ./... >/dev/null && cd .. && echo ok-go
`
	}
	// The system's python: root's PATH may lead to a per-user one.
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err == nil {
		// Offline: a local package, built with the system's setuptools,
		// installed by the system's pip into the venv. (A venv's own
		// pip cannot be set up with the default policy: ensurepip
		// reads pip's vendored cacert.pem, which deny_read *.pem
		// refuses.)
		b.write("pkg/setup.py", "from setuptools import setup\nsetup(name='p', version='1', py_modules=['p'])\n")
		b.write("pkg/p.py", "X = 1\n")
		script += py + ` -m venv --without-pip --system-site-packages venv && ./venv/bin/python -m pip install -q --no-index --no-build-isolation ./pkg && ./venv/bin/python -c 'import p' && echo ok-pip
`
	}
	if npm, err := exec.LookPath("npm"); err == nil {
		b.write("js/package.json", `{"name": "j", "version": "1.0.0", "scripts": {"test": "node -e 0"}}`+"\n")
		script += `(cd js && ` + npm + ` test >/dev/null) && echo ok-npm
`
	}
	r := b.sh(script)
	if r.code != 0 || !strings.Contains(r.stdout, "ok-basic") {
		t.Fatalf("ordinary work failed in a read-only home:\n%s", r)
	}
	for tool, bin := range map[string]string{"git": "git", "go": "go", "npm": "npm", "pip": "/usr/bin/python3"} {
		if _, err := exec.LookPath(bin); err == nil && !strings.Contains(r.stdout, "ok-"+tool) {
			t.Errorf("%s failed:\n%s", tool, r)
		}
	}
	if b.read("~/.cache/aigate/xdg/tool/s2") != "state\n" {
		t.Errorf("tool state in $XDG_CACHE_HOME was not written:\n%s", r)
	}
	state := "~/.local/state"
	for _, kv := range b.env {
		if v, ok := strings.CutPrefix(kv, "XDG_STATE_HOME="); ok {
			state = v
		}
	}
	if b.read(state+"/tool/s2") != "state\n" {
		t.Errorf("tool state in %s was not written:\n%s", state, r)
	}
	// No file of it was refused: a refusal reported in ordinary work
	// (go's telemetry beneath a read-only home, once per compile) buries
	// the ones that matter. (Connects are the network policy's: in a
	// guest without a name server npm tries 127.0.0.1:53, refused.)
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.Contains(line, "aigate: blocked ") && !strings.Contains(line, "blocked connect ") {
			t.Errorf("ordinary work had a file refused: %s\n%s", line, r)
			break
		}
	}
	return r
}
