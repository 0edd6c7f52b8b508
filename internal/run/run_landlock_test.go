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
	for _, w := range []string{wd, repo, "/home/u/tmp", filepath.Join(home, ".config/tool"), "/srv/x", ".cache"} {
		if !slices.Contains(opts.Writable, w) {
			t.Errorf("writable %v lacks %s", opts.Writable, w)
		}
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
		err := checkLandlock(f, c.backend, landlock.Options{Required: c.required}, c.abi)
		if (err != nil) != c.err {
			t.Errorf("%+v: err %v", c, err)
		}
		if got := errOut.String(); (c.warn == "") != (got == "") || !strings.Contains(got, c.warn) {
			t.Errorf("%+v: warning %q", c, got)
		}
	}
}
