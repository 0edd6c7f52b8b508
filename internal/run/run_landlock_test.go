//go:build linux

package run

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
)

func TestLandlockOptions(t *testing.T) {
	home := t.TempDir()
	repo := filepath.Join(home, "src", "repo")
	if err := os.MkdirAll(filepath.Join(repo, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(repo, "sub")
	pol := &policy.Policy{
		AllowUnix: []policy.PathRule{{Pattern: "@dbus"}},
		Writable:  []policy.PathRule{{Pattern: "~/.config/tool"}, {Pattern: "/srv/x"}},
	}
	env := map[string]string{"TMPDIR": "/home/u/tmp"}
	paths := &config.Paths{ProjectRoot: wd, WorkDir: wd}
	opts := landlockOptions(pol, "fanotify", home, paths, func(k string) string { return env[k] })
	if !opts.Required || !opts.AbstractUnix || opts.Home != home {
		t.Errorf("options %+v", opts)
	}
	for _, w := range []string{wd, repo, "/home/u/tmp", filepath.Join(home, ".config/tool"), "/srv/x", ".cache/aigate"} {
		if !slices.Contains(opts.Writable, w) {
			t.Errorf("writable %v lacks %s", opts.Writable, w)
		}
	}
	for _, w := range []string{".cache", ".cache/go-build", ".cache/pip", ".cargo/registry", ".cargo/git", ".gradle", ".m2/repository"} {
		if slices.Contains(opts.Writable, w) {
			t.Errorf("writable %v has the user's cache %s, the sandbox has its own", opts.Writable, w)
		}
	}
	// A tool in shared_caches writes the user's caches, as outside.
	shared := &policy.Policy{SharedCaches: []policy.PathRule{{Pattern: "cargo"}, {Pattern: "maven"}, {Pattern: "pip"}}}
	opts = landlockOptions(shared, "lsm", home, paths, func(k string) string { return env[k] })
	for _, w := range []string{".cargo/registry", ".cargo/git", ".m2/repository", ".cache/pip"} {
		if !slices.Contains(opts.Writable, w) {
			t.Errorf("shared: writable %v lacks %s", opts.Writable, w)
		}
	}
	if slices.Contains(opts.Writable, ".gradle") {
		t.Errorf("gradle not shared, but writable %v has ~/.gradle", opts.Writable)
	}
	env["AIGATE_LANDLOCK"] = "optional"
	if opts := landlockOptions(&policy.Policy{}, "fanotify", home, paths, func(k string) string { return env[k] }); opts.Required || opts.AbstractUnix {
		t.Errorf("optional, no abstract sockets allowed: %+v", opts)
	}
	if opts := landlockOptions(&policy.Policy{}, "lsm", home, paths, func(string) string { return "" }); opts.Required {
		t.Errorf("lsm backend: Landlock required: %+v", opts)
	}
}

// TestCheckLandlock: fanotify without Landlock refuses unless the user
// opted out, and every case that gives something up says what.
func TestCheckLandlock(t *testing.T) {
	for _, c := range []struct {
		backend  string
		required bool
		abi      int
		err      bool
		warn     string
	}{
		{"fanotify", true, 0, true, ""},
		{"fanotify", false, 0, false, "can ptrace and signal"},
		{"fanotify", true, 5, false, "can still signal"},
		{"fanotify", true, 7, false, ""},
		{"lsm", false, 0, false, "home stays writable"},
		{"lsm", false, 5, false, ""},
	} {
		var errOut bytes.Buffer
		f := &cmdutil.Factory{Err: &errOut}
		err := checkLandlock(f, c.backend, landlock.Options{Required: c.required, Home: "/home/u", Writable: []string{"proj", "/tmp"},
			ReadOnly: []string{"/run/user/1000/systemd"}}, c.abi)
		if (err != nil) != c.err {
			t.Errorf("%+v: err %v", c, err)
		}
		if got := errOut.String(); (c.warn == "") != (got == "") || !strings.Contains(got, c.warn) {
			t.Errorf("%+v: warning %q", c, got)
		}
	}
}

// TestCheckLandlockRegranted: where $TMPDIR (or writable:) is the
// runtime directory, or lies in or around its systemd directory, the
// domain grants that directory again: run says so where Landlock is.
func TestCheckLandlockRegranted(t *testing.T) {
	for _, c := range []struct {
		writable string
		abi      int
		warn     bool
	}{
		{"/run/user/1000", 7, true},
		{"/run/user/1000/systemd/x", 7, true},
		{"/run/user/1000/app", 7, false},
		{"/run/user/10000", 7, false},
		{"/run/user/1000", 0, false}, // no Landlock: the home's warning says enough
	} {
		var errOut bytes.Buffer
		f := &cmdutil.Factory{Err: &errOut}
		opts := landlock.Options{Home: "/home/u", Writable: []string{".cache", c.writable}, ReadOnly: []string{"/run/user/1000/systemd"}}
		if err := checkLandlock(f, "lsm", opts, c.abi); err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(errOut.String(), "/run/user/1000/systemd is writable inside")
		if got != c.warn {
			t.Errorf("%+v: warned %v: %q", c, got, errOut.String())
		}
	}
}

// TestLandlockCovers: on the fanotify backend the user's caches are kept
// (landlock.Options.Keep) and run tells the agent the domain covers them,
// unless the command may start without the domain, the home lies beneath
// a shared temp directory (Landlock cannot protect it), or the policy
// shares a tool's caches or makes a cache writable itself.
func TestLandlockCovers(t *testing.T) {
	home := homeOutsideTemp(t)
	for _, d := range []string{".cache/go-build/00", ".cache/pip", ".cache/other", "go/pkg/mod", "go/bin", ".npm/_npx", "proj"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	paths := &config.Paths{ProjectRoot: filepath.Join(home, "proj"), WorkDir: filepath.Join(home, "proj")}
	caches := []string{filepath.Join(home, ".cache/go-build"), filepath.Join(home, "go/pkg/mod"), filepath.Join(home, ".npm"), filepath.Join(home, ".cache/pip")}
	none := func(string) string { return "" }
	for _, tc := range []struct {
		name    string
		pol     *policy.Policy
		backend string
		home    string
		getenv  func(string) string
		abi     int
		want    []string
	}{
		{"fanotify", &policy.Policy{}, "fanotify", home, none, 7, caches},
		{"ABI 1", &policy.Policy{}, "fanotify", home, none, 1, caches},
		{"no Landlock", &policy.Policy{}, "fanotify", home, none, 0, nil},
		{"Landlock optional", &policy.Policy{}, "fanotify", home, func(k string) string {
			return map[string]string{LandlockEnv: "optional"}[k]
		}, 7, nil},
		{"lsm: nothing kept", &policy.Policy{}, "lsm", home, none, 7, nil},
		{"go shared", &policy.Policy{SharedCaches: []policy.PathRule{{Pattern: "go"}}}, "fanotify", home, none, 7, caches[2:]},
		{"allow_write of ~/.cache", &policy.Policy{Writable: []policy.PathRule{{Pattern: "~/.cache/go-build/00"}}}, "fanotify", home, none, 7, caches[1:]},
		{"home beneath /tmp", &policy.Policy{}, "fanotify", t.TempDir(), none, 7, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := landlockOptions(tc.pol, tc.backend, tc.home, paths, tc.getenv)
			got := landlockCovers(opts, tc.abi)
			slices.Sort(got)
			want := slices.Clone(tc.want)
			if tc.home != home {
				want = nil
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("covers %v, want %v (keep %v)", got, want, opts.Keep)
			}
			if tc.backend == "fanotify" && !slices.Contains(opts.Create, ".cache/aigate/npm") {
				t.Errorf("the sandboxes' own caches are not made before the domain: %v", opts.Create)
			}
		})
	}
}

// homeOutsideTemp makes a home beneath no shared temp directory (a home
// beneath one is not protected: landlock.Plan): beneath the package's
// directory, or, when that lies beneath one (a clone in /tmp, as CI
// makes), the user's cache directory.
func homeOutsideTemp(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, base := range []func() (string, error){func() (string, error) { return filepath.Abs(".") }, os.UserCacheDir} {
		dir, err := base()
		if err != nil {
			continue
		}
		tried = append(tried, dir)
		if beneathTemp(dir) {
			continue
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		home, err := os.MkdirTemp(dir, ".aigate-test-home-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(home) })
		return home
	}
	t.Fatalf("no directory for a test home outside every shared temp directory (tried %v): run the tests from a clone outside /tmp", tried)
	return ""
}

// beneathTemp says whether dir or one of its ancestors is a shared temp
// directory.
func beneathTemp(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if (landlock.OSDirs{}).IsTempDir(d) {
			return true
		}
		if d == "/" {
			return false
		}
	}
}

// TestLandlockHomeAsProject: run in the home, below a ~/.aigate.yaml, or
// in a home that is a git work tree (dotfiles), the domain does not make
// the whole home writable: only the working directory below it and the
// usual places are.
func TestLandlockHomeAsProject(t *testing.T) {
	home := homeOutsideTemp(t)
	if err := os.MkdirAll(filepath.Join(home, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(home, "notes")
	for _, paths := range []*config.Paths{
		{ProjectRoot: home, WorkDir: home},
		{ProjectRoot: home, WorkDir: sub, Project: filepath.Join(home, config.ProjectName)},
		{ProjectRoot: sub, WorkDir: sub}, // a dotfiles work tree: gitTop stops below the home
	} {
		opts := landlockOptions(&policy.Policy{}, "fanotify", home, paths, func(string) string { return "" })
		if slices.Contains(opts.Writable, home) {
			t.Errorf("project %s, working directory %s: writable %v has the whole home", paths.ProjectRoot, paths.WorkDir, opts.Writable)
		}
		if paths.WorkDir != home && !slices.Contains(opts.Writable, paths.WorkDir) {
			t.Errorf("working directory %s below the home is not writable: %v", paths.WorkDir, opts.Writable)
		}
		if rs, protected := landlock.Plan(opts, landlock.OSDirs{}); !protected || writableAt(rs, filepath.Join(home, ".bashrc")) {
			t.Errorf("project %s, working directory %s: ~/.bashrc writable in the domain", paths.ProjectRoot, paths.WorkDir)
		}
	}
}

// writableAt says whether a rule of rs grants writing a file at path.
func writableAt(rs landlock.Ruleset, path string) bool {
	for _, r := range rs.Rules {
		if (r.Path == path || strings.HasPrefix(path, r.Path+"/")) && r.Access&landlock.AccessWriteFile != 0 {
			return true
		}
	}
	return false
}
