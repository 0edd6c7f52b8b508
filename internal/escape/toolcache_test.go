//go:build linux

package escape

import (
	"archive/zip"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// depZip is a module zip of example.com/dep v1.0.0 as a Go proxy serves it.
func depZip(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for name, content := range files {
		w, err := z.Create("example.com/dep@v1.0.0/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestEscapeToolCaches: the user's build and package caches are trusted
// by go, npm and pip outside, so a sandbox cannot write them (refused with
// a write event); its own go build, go test, npx and pip install go on
// with caches of the sandboxes' own, modules coming from the user's module
// cache without writing it.
func TestEscapeToolCaches(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		b := homeBox(t, b0)
		// The user's caches as a build outside leaves them.
		b.write("~/.cache/go-build/00/0011-d", "the user's object\n")
		b.write("~/.npm/_npx/.keep", "")
		b.write("~/.cache/pip/.keep", "")
		b.write("~/go/pkg/mod/example.com/dep@v1.0.0/dep.go", "package dep\n")
		attacks := map[string]string{
			"gobuild":    "~/.cache/go-build/00/0011-d",
			"gobuildnew": "~/.cache/go-build/00/ffee-d",
			"modcache":   "~/go/pkg/mod/example.com/dep@v1.0.0/dep.go",
			"npx":        "~/.npm/_npx/evil.js",
			"pip":        "~/.cache/pip/evil",
		}
		for name, target := range attacks {
			t.Run(name, func(t *testing.T) {
				before := b.read(target)
				r := b.sh(`echo 'evil' > ` + target + ` && echo PLANTED`)
				if strings.Contains(r.stdout, "PLANTED") || b.read(target) != before {
					t.Fatalf("the sandbox wrote %s, which the user's tools trust outside:\n%s", target, r)
				}
				// ~/.cache outside ~/.cache/aigate is read-only where
				// Landlock is: refused there first, without an event.
				inCache := strings.HasPrefix(target, "~/.cache/")
				if _, ok := r.denied(events.OpWrite, b.path(target)); !ok && (!inCache || !homeProtected()) {
					t.Errorf("no write event for %s:\n%s", target, r)
				}
			})
		}

		// Not by writing: by a name of the sandbox's choosing. A link,
		// rename or symlink into a cache plants an entry there without
		// an open of it; a link out of one is a second path to an entry,
		// its writes no longer through the cache's directories. On
		// fanotify, Landlock refuses all of them (~/.cache, ~/go and
		// ~/.npm are Fixed above the caches), which is what lets the
		// backend protect the caches by their directories alone.
		b.write("~/.cache/other/.keep", "")
		plants := []struct{ name, script, target string }{
			{"link-in", `ln ~/proj/evil ~/.cache/go-build/00/aaaa-d`, "~/.cache/go-build/00/aaaa-d"},
			{"rename-in", `mv ~/proj/evil ~/.cache/go-build/00/bbbb-d`, "~/.cache/go-build/00/bbbb-d"},
			{"symlink-in", `ln -s ~/proj/evil ~/.cache/go-build/00/cccc-d`, "~/.cache/go-build/00/cccc-d"},
			{"npx-link-in", `ln ~/proj/evil ~/.npm/_npx/linked.js`, "~/.npm/_npx/linked.js"},
			{"modcache-symlink-in", `ln -s ~/proj/evil ~/go/pkg/mod/example.com/evil.go`, "~/go/pkg/mod/example.com/evil.go"},
			{"pip-rename-in", `mv ~/proj/evil ~/.cache/pip/renamed`, "~/.cache/pip/renamed"},
			{"dir-rename-in", `mkdir ~/proj/d && cp ~/proj/evil ~/proj/d/dddd-d && mv ~/proj/d ~/.cache/go-build/dd`, "~/.cache/go-build/dd/dddd-d"},
		}
		for _, p := range plants {
			t.Run(p.name, func(t *testing.T) {
				b.write("~/proj/evil", "evil\n")
				r := b.sh(p.script + ` && echo PLANTED`)
				// mv and cp, refused the rename, copy: the create is
				// refused with an event, leaving an empty file.
				fi, err := os.Lstat(b.path(p.target))
				if err == nil && (!fi.Mode().IsRegular() || fi.Size() > 0) || strings.Contains(r.stdout, "PLANTED") {
					t.Fatalf("the sandbox planted %s in a cache the user's tools trust outside:\n%s", p.target, r)
				}
			})
		}
		t.Run("link-out", func(t *testing.T) {
			target := "~/.cache/go-build/00/0011-d"
			before := b.read(target)
			r := b.sh(`ln ` + target + ` ~/.cache/other/x; ln ` + target + ` ~/proj/x; mv ` + target + ` ~/proj/y; for f in ~/.cache/other/x ~/proj/x ~/proj/y; do echo evil >> $f; done; cat ` + target)
			if b.read(target) != before {
				t.Fatalf("the sandbox wrote %s through a second name:\n%s", target, r)
			}
		})

		t.Run("work", func(t *testing.T) {
			script := "set -e\n"
			gobin, goErr := exec.LookPath("go")
			if goErr == nil {
				// A module with a dependency the user's module cache holds
				// (downloaded outside from a local proxy), none on the network.
				mod := "module example.com/dep\n\ngo 1.21\n"
				dep := "package dep\n\nfunc Hi() string { return \"hi from dep\" }\n"
				b.write("~/proxy/example.com/dep/@v/list", "v1.0.0\n")
				b.write("~/proxy/example.com/dep/@v/v1.0.0.info", `{"Version":"v1.0.0"}`+"\n")
				b.write("~/proxy/example.com/dep/@v/v1.0.0.mod", mod)
				b.write("~/proxy/example.com/dep/@v/v1.0.0.zip", depZip(t, map[string]string{"go.mod": mod, "dep.go": dep}))
				b.write("app/go.mod", "module example.com/app\n\ngo 1.21\n\nrequire example.com/dep v1.0.0\n")
				b.write("app/main.go", "package main\n\nimport \"example.com/dep\"\n\nfunc main() { println(dep.Hi()) }\n")
				b.write("app/main_test.go", "package main\n\nimport \"testing\"\n\nfunc TestM(t *testing.T) {}\n")
				os.RemoveAll(b.path("~/go/pkg/mod/example.com")) // the stand-in above
				if out, err := b.outsideRun("cd app && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOSUMDB=off GOPROXY=file://" +
					b.path("~/proxy") + " " + gobin + " build -o /dev/null ."); err != nil {
					t.Fatalf("go build outside: %v\n%s", err, out)
				}
				script += `cd app
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
test "$(` + gobin + ` env GOCACHE)" = ~/.cache/aigate/go-build
` + gobin + ` build -o app . && ./app 2>&1 | grep -q 'hi from dep'
` + gobin + ` build -o app . && ` + gobin + ` test ./... >/dev/null
cd ..
echo ok-go
`
			}
			if npx, err := exec.LookPath("npx"); err == nil {
				b.write("tool/package.json", `{"name": "tool", "version": "1.0.0", "bin": {"tool": "t.js"}}`+"\n")
				b.write("tool/t.js", "#!/usr/bin/env node\nconsole.log('tool ran')\n")
				if err := os.Chmod(b.path("tool/t.js"), 0o755); err != nil {
					t.Fatal(err)
				}
				script += `npm_config_update_notifier=false ` + npx + ` --yes --offline ./tool | grep -q 'tool ran' && echo ok-npx
`
			}
			py := "/usr/bin/python3"
			if _, err := os.Stat(py); err == nil {
				b.write("pkg/setup.py", "from setuptools import setup\nsetup(name='p', version='1', py_modules=['p'])\n")
				b.write("pkg/p.py", "X = 1\n")
				script += py + ` -m venv --without-pip --system-site-packages venv && ./venv/bin/python -m pip install -q --no-index --no-build-isolation ./pkg && ./venv/bin/python -c 'import p' && echo ok-pip
`
			}
			goBuildBefore := listTree(b.path("~/.cache/go-build"))
			// Three tools' builds and installs in one run: at a load of
			// 25 on 2 CPUs they took more than runLimit (pip was at work).
			b.limit = 3 * runLimit
			r := b.sh(script)
			b.limit = 0
			for tool, ran := range map[string]bool{"go": goErr == nil, "npx": strings.Contains(script, "npx"), "pip": strings.Contains(script, "pip")} {
				if ran && !strings.Contains(r.stdout, "ok-"+tool) {
					t.Errorf("%s failed inside:\n%s", tool, r)
				}
			}
			if goErr == nil {
				if after := listTree(b.path("~/.cache/go-build")); after != goBuildBefore {
					t.Errorf("the sandbox's go build wrote the user's build cache:\nbefore %s\nafter %s", goBuildBefore, after)
				}
				if listTree(b.path("~/.cache/aigate/go-build")) == "" || listTree(b.path("~/.cache/aigate/go-mod/example.com")) == "" {
					t.Errorf("the sandbox's own caches are empty:\n%s", r)
				}
			}
			for _, e := range r.events {
				t.Errorf("ordinary work was refused: %+v\n%s", e, r)
			}
		})
	})
}

// listTree lists the files beneath dir, "" when there are none.
func listTree(dir string) string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	return strings.Join(out, " ")
}

// TestEscapeBuildToolHomes: cargo, gradle and maven read their homes as
// code at the next build outside (a registry crate's build.rs, ~/.cargo/bin
// in PATH, ~/.cargo/env sourced by the profile, gradle's init scripts and
// cached plugin jars, maven's cached plugins and ~/.mavenrc), so a
// sandbox cannot write them: the home is read-only there (Landlock, no
// event) and they are deny_write (the refusal's event where Landlock is
// absent). The sandbox's own cargo, gradle and maven get homes of their
// own in ~/.cache/aigate, and mvn builds with one.
func TestEscapeBuildToolHomes(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		b := homeBox(t, b0)
		// The user's state as builds outside leave it.
		existing := []string{
			"~/.cargo/registry/src/index.crates.io-6f17d22bba15001f/dep-1.0.0/build.rs",
			"~/.cargo/git/checkouts/dep-0123/abc/src/lib.rs",
			"~/.cargo/bin/cargo-fmt",
			"~/.cargo/env",
			"~/.gradle/init.d/user.gradle",
			"~/.gradle/caches/modules-2/files-2.1/org.x/x/1.0/0a1b/x-1.0.jar",
			"~/.gradle/wrapper/dists/gradle-8.5-bin/abc/gradle-8.5/bin/gradle",
			"~/.m2/repository/org/apache/maven/plugins/maven-compiler-plugin/3.11.0/maven-compiler-plugin-3.11.0.jar",
		}
		for _, f := range existing {
			b.write(f, "the user's\n")
		}
		attacks := append(slices.Clip(existing),
			"~/.cargo/registry/cache/index.crates.io-6f17d22bba15001f/evil-1.0.0.crate",
			"~/.cargo/bin/ls",
			"~/.gradle/init.d/evil.gradle",
			"~/.gradle/init.gradle",
			"~/.m2/repository/org/evil/evil/1.0/evil-1.0.jar",
			"~/.mavenrc",
		)
		for _, target := range attacks {
			t.Run(strings.ReplaceAll(strings.TrimPrefix(target, "~/"), "/", "_"), func(t *testing.T) {
				before := b.read(target)
				r := b.sh(`mkdir -p "$(dirname ` + target + `)"; echo 'cp ~/.ssh/id_rsa /tmp/x # evil' >> ` + target + ` && echo PLANTED`)
				if strings.Contains(r.stdout, "PLANTED") || b.read(target) != before {
					t.Fatalf("the sandbox wrote %s, which runs at the next build outside:\n%s", target, r)
				}
				if _, ok := r.denied(events.OpWrite, b.path(target)); !ok && !homeProtected() {
					t.Errorf("no write event for %s (no Landlock, so the backend refused it):\n%s", target, r)
				}
			})
		}

		t.Run("work", func(t *testing.T) {
			own := b.path("~/.cache/aigate")
			script := `set -e
test "$CARGO_HOME" = ` + own + `/cargo
test "$GRADLE_USER_HOME" = ` + own + `/gradle
test "$GRADLE_RO_DEP_CACHE" = ` + b.path("~/.gradle/caches") + `
case "$MAVEN_OPTS" in *-Dmaven.repo.local=` + own + `/maven\ *) ;; *) echo "MAVEN_OPTS=$MAVEN_OPTS"; exit 1;; esac
mkdir -p "$CARGO_HOME/registry/src" "$CARGO_HOME/bin" "$GRADLE_USER_HOME/caches" && echo x > "$CARGO_HOME/bin/tool" && echo x > "$GRADLE_USER_HOME/caches/f"
echo ok-env
`
			mvn, mvnErr := exec.LookPath("mvn")
			if mvnErr == nil {
				// Where it runs: the VM guest has the host's mvn script but
				// not always a working java.
				if out, err := b.outsideRun(mvn + " -v"); err != nil {
					t.Logf("mvn does not run outside here, so not inside either (%v): %s", err, out)
					mvnErr = err
				}
			}
			if mvnErr == nil {
				b.write("mvnproj/pom.xml", `<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>`+
					`<groupId>x</groupId><artifactId>y</artifactId><version>1</version><packaging>pom</packaging></project>`+"\n")
				b.write("~/.m2/settings.xml", "<settings/>\n") // deny_read, as a user's usually is
				script += `cd mvnproj && ` + mvn + ` -o -B -q validate && test -d ` + own + `/maven && echo ok-mvn
`
			}
			m2Before := listTree(b.path("~/.m2/repository"))
			r := b.sh(script)
			if !strings.Contains(r.stdout, "ok-env") {
				t.Errorf("the build tools' own homes are not set or not writable inside:\n%s", r)
			}
			if mvnErr == nil && !strings.Contains(r.stdout, "ok-mvn") {
				t.Errorf("mvn failed inside:\n%s", r)
			}
			if after := listTree(b.path("~/.m2/repository")); after != m2Before {
				t.Errorf("the sandbox's mvn wrote the user's repository:\nbefore %s\nafter %s", m2Before, after)
			}
			for _, e := range r.events {
				if !strings.HasSuffix(e.Path, "/.m2/settings.xml") { // mvn tries the user's settings: deny_read
					t.Errorf("ordinary work was refused: %+v\n%s", e, r)
				}
			}
		})
	})
}

// TestEscapeUserCacheDir: tools outside run what ~/.cache holds
// (pre-commit's hook environments at the next git commit, corepack's
// package managers, Claude Code's staged update, Playwright's browsers),
// so the sandbox cannot write ~/.cache except its own ~/.cache/aigate
// (Landlock; no event, docs/threat-model.md), and XDG_CACHE_HOME points
// the tools inside there. Without Landlock (LSM backend only) the home
// is writable and run says so.
func TestEscapeUserCacheDir(t *testing.T) {
	eachBackend(t, func(t *testing.T, b0 *box) {
		b := homeBox(t, b0)
		existing := []string{
			"~/.cache/pre-commit/repo0a1b/hooks/check.py",
			"~/.cache/node/corepack/v1/pnpm/9.0.0/bin/pnpm.cjs",
			"~/.cache/claude/staging/claude",
		}
		for _, f := range existing {
			b.write(f, "the user's\n")
		}
		targets := append(slices.Clip(existing), "~/.cache/pre-commit/repo0a1b/hooks/new.py",
			"~/.cache/ms-playwright/chromium-1100/chrome-linux/chrome", "~/.cache/newtool/x")
		var script strings.Builder
		for _, target := range targets {
			fmt.Fprintf(&script, "(mkdir -p \"$(dirname %s)\"; echo evil >> %s) 2>/dev/null && echo \"PLANTED %s\"\n", target, target, target)
		}
		script.WriteString(`echo evil > ~/proj/e && mv ~/proj/e ~/.cache/pre-commit/repo0a1b/hooks/moved.py 2>/dev/null && echo "PLANTED mv"
echo ok > "$XDG_CACHE_HOME/tool-state" && echo "XDG $XDG_CACHE_HOME"
`)
		r := b.sh(script.String())
		if !homeProtected() {
			if b.backend != "lsm" || !strings.Contains(r.stderr, "home stays writable") {
				t.Fatalf("no Landlock, and run did not say the home stays writable:\n%s", r)
			}
			return
		}
		if strings.Contains(r.stdout, "PLANTED") {
			t.Errorf("the sandbox wrote the user's ~/.cache:\n%s", r)
		}
		for _, f := range existing {
			if b.read(f) != "the user's\n" {
				t.Errorf("%s changed", f)
			}
		}
		if !strings.Contains(r.stdout, "XDG "+b.path("~/.cache/aigate/xdg")+"\n") || b.read("~/.cache/aigate/xdg/tool-state") != "ok\n" {
			t.Errorf("the tools' cache inside is not ~/.cache/aigate/xdg, or not writable:\n%s", r)
		}
	})
}
