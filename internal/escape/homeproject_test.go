//go:build linux

package escape

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestEscapeHomeAsProject: the home as the project (run in ~, or below a
// ~/.aigate.yaml) leaves the home as read-only as any other run does:
// before, the home itself was in the Landlock domain's writable list and
// the tool could make ~/bin or plant ~/.local/bin/ls. The working
// directory below the home stays writable. A home that is a dotfiles git
// work tree is a guard only: gitTop already stopped below the home.
func TestEscapeHomeAsProject(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		if !homeProtected() {
			t.Fatal("no Landlock on this kernel: the home is not read-only in any run") // every kernel the suite runs on has it
		}
		b := homeBox(t, b0)
		b.write("~/.bashrc", "# the user's\n")
		b.mkdir(b.path("~/notes"))
		// Places no deny_write entry names (the default policy's
		// deny_write covers ~/.bashrc): only Landlock keeps them.
		attacks := []string{
			`mkdir -p ~/.local/bin && printf '#!/bin/sh\necho pwned\n' > ~/.local/bin/ls`,
			`mkdir ~/bin`,
			`mkdir -p ~/.config/autostart && echo x > ~/.config/autostart/x.desktop`,
			`echo evil >> ~/.bashrc`,
		}
		var script strings.Builder
		for i, a := range attacks {
			script.WriteString(fmt.Sprintf("if (%s) 2>/dev/null; then echo 'WROTE %d'; fi\n", a, i))
		}
		script.WriteString("echo ok > ./written && echo WORKDIR\n")
		for _, tc := range []struct {
			name, dir string
			setup     func()
		}{
			{"home", b.home, func() {}},
			{"project file in the home", b.path("~/notes"), func() { b.write("~/.aigate.yaml", "# the user's notes\n") }},
			{"dotfiles work tree", b.path("~/notes"), func() { os.Remove(b.path("~/.aigate.yaml")); b.mkdir(b.path("~/.git")) }},
		} {
			tc.setup()
			b.proj = tc.dir
			r := b.sh(script.String())
			for i, a := range attacks {
				if strings.Contains(r.stdout, fmt.Sprintf("WROTE %d\n", i)) {
					t.Errorf("%s: the home is writable: %s went through", tc.name, a)
				}
			}
			for _, p := range []string{"~/.local/bin", "~/bin", "~/.config/autostart"} {
				if _, err := os.Lstat(b.path(p)); err == nil {
					t.Errorf("%s: %s planted", tc.name, p)
					os.RemoveAll(b.path(p)) // for the next case
				}
			}
			if tc.dir != b.home && !strings.Contains(r.stdout, "WORKDIR") {
				t.Errorf("%s: the working directory %s below the home is not writable:\n%s", tc.name, tc.dir, r)
			}
			if tc.dir == b.home && !strings.Contains(r.stderr, "the project directory is your home") {
				t.Errorf("%s: run did not say the home stays read-only:\n%s", tc.name, r)
			}
		}
		if got := b.read("~/.bashrc"); got != "# the user's\n" {
			t.Errorf("~/.bashrc changed: %q", got)
		}
	})
}

// TestEscapeMachineAsProject: run in / or /proc is refused before any
// sandbox exists (exit 5, saying to cd into the project), never a walk of
// the machine nor a run whose project is all of it.
func TestEscapeMachineAsProject(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		for _, dir := range []string{"/", "/proc"} {
			b.proj = dir
			r := b.sh("echo RAN")
			if r.code != 5 || strings.Contains(r.stdout, "RAN") || !strings.Contains(r.stderr, "cd into your project's directory") {
				t.Errorf("run in %s: want exit 5 saying to cd into the project, nothing run:\n%s", dir, r)
			}
		}
	})
}
