//go:build linux

package run

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
)

// The policy's rules beneath ~/.config and ~/.local/share (the defaults'
// and the user's own, in every list whose entries may be paths) follow
// the user's $XDG_CONFIG_HOME and $XDG_DATA_HOME, where git, gh, fish,
// direnv, systemd and the desktop read those files then: not a relative
// or empty value, which the XDG specification ignores, not the default
// itself, not what the policy already covers, never "/", and an
// exception never at or above the home or the project.
func TestXDGRules(t *testing.T) {
	const home, proj = "/home/u", "/home/u/p"
	compile := func(t *testing.T, extra func(*policy.Policy)) *policy.Compiled {
		pol, _ := policy.Merge(nil, nil, false)
		if extra != nil {
			extra(pol)
		}
		c, err := policy.Compile(pol, policy.Env{Home: home, ProjectRoot: proj})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	user := func(pol *policy.Policy) {
		pol.ExceptRead = append(pol.ExceptRead, policy.PathRule{Pattern: "~/.config/tool/"})
		pol.DenyExec = append(pol.DenyExec, policy.PathRule{Pattern: "/home/u/.config/tool/bin"})
	}
	exceptAll := func(pol *policy.Policy) {
		pol.ExceptRead = append(pol.ExceptRead, policy.PathRule{Pattern: "~/.config/"})
	}
	patterns := func(rules []api.RunRule) []string {
		var got []string
		for _, r := range rules {
			got = append(got, r.Pattern)
		}
		return got
	}
	for _, tc := range []struct {
		name  string
		extra func(*policy.Policy)
		env   []string
		has   map[string][]string // list -> patterns it must hold
		hasnt map[string][]string // list -> patterns it must not hold
		empty []string            // lists that must be empty
		note  string              // a note must contain this
	}{
		{name: "unset", extra: user, empty: []string{"read", "write", "exec", "except"}},
		{name: "config home in the home", extra: user, env: []string{"XDG_CONFIG_HOME=/home/u/cfg/"},
			has: map[string][]string{
				"write":  {"~/cfg/git/", "~/cfg/fish/", "~/cfg/autostart/", "~/cfg/systemd/user/", "~/cfg/mimeapps.list", "~/cfg/direnv/", "~/cfg/nvim/", "~/cfg/tmux/", "~/cfg/environment.d/"},
				"read":   {"~/cfg/gh/", "~/cfg/git/credentials", "~/cfg/rclone/", "~/cfg/gcloud/", "~/cfg/containers/auth.json"},
				"except": {"~/cfg/tool/"},
				"exec":   {"~/cfg/tool/bin"},
			},
			hasnt: map[string][]string{"write": {"~/cfg/applications/", "~/.local/share/applications/"}, "read": {"~/cfg/keyrings/"}}},
		{name: "data home outside the home", env: []string{"XDG_DATA_HOME=/srv/u/data"},
			has: map[string][]string{
				"write": {"/srv/u/data/applications/", "/srv/u/data/systemd/user/", "/srv/u/data/direnv/"},
				"read":  {"/srv/u/data/keyrings/", "/srv/u/data/kwalletd/", "/srv/u/data/jupyter/runtime/"},
			},
			hasnt: map[string][]string{"write": {"/srv/u/data/git/"}}},
		{name: "the last value counts", env: []string{"XDG_DATA_HOME=/a", "XDG_DATA_HOME=/b"},
			has: map[string][]string{"write": {"/b/applications/"}}, hasnt: map[string][]string{"write": {"/a/applications/"}}},
		{name: "the defaults themselves", extra: user, env: []string{"XDG_CONFIG_HOME=/home/u/.config", "XDG_DATA_HOME=/home/u/.local/share/"},
			empty: []string{"read", "write", "exec", "except"}},
		{name: "the default through ..", env: []string{"XDG_CONFIG_HOME=/home/u/x/../.config"}, empty: []string{"read", "write"}},
		{name: "relative", env: []string{"XDG_CONFIG_HOME=cfg", "XDG_DATA_HOME=./data"}, empty: []string{"read", "write"}},
		{name: "empty", env: []string{"XDG_CONFIG_HOME=", "XDG_DATA_HOME="}, empty: []string{"read", "write"}},
		{name: "already covered", env: []string{"XDG_DATA_HOME=/home/u/.local/bin"}, // by ~/.local/bin/
			empty: []string{"write"}, has: map[string][]string{"read": {"~/.local/bin/keyrings/"}}},
		{name: "already covered by read", env: []string{"XDG_CONFIG_HOME=/home/u/.ssh"},
			empty: []string{"read"}, has: map[string][]string{"write": {"~/.ssh/git/"}}},
		{name: "in the project", env: []string{"XDG_CONFIG_HOME=/home/u/p/.cfg"},
			has: map[string][]string{"write": {"~/p/.cfg/git/"}, "read": {"~/p/.cfg/gh/"}}},
		{name: "the user's whole config dir, nested rules once", extra: func(pol *policy.Policy) {
			pol.DenyWrite = append(pol.DenyWrite, policy.PathRule{Pattern: "~/.config/"})
		}, env: []string{"XDG_CONFIG_HOME=/srv/cfg"},
			has: map[string][]string{"write": {"/srv/cfg/"}}, hasnt: map[string][]string{"write": {"/srv/cfg/git/", "/srv/cfg/fish/"}}},
		{name: "beside the default", extra: func(pol *policy.Policy) {
			pol.DenyWrite = append(pol.DenyWrite, policy.PathRule{Pattern: "~/.config-old/"})
		}, env: []string{"XDG_CONFIG_HOME=/srv/cfg"},
			has: map[string][]string{"write": {"/srv/cfg/git/"}}, hasnt: map[string][]string{"write": {"/srv/cfg/-old/", "/srv/cfg-old/"}}},
		{name: "a rule above the default", extra: func(pol *policy.Policy) {
			pol.DenyWrite = append(pol.DenyWrite, policy.PathRule{Pattern: "~/.local/"})
		}, env: []string{"XDG_DATA_HOME=/srv/data"},
			has: map[string][]string{"write": {"/srv/data/"}}, hasnt: map[string][]string{"write": {"/srv/data/applications/"}}},
		{name: "root", extra: exceptAll, env: []string{"XDG_CONFIG_HOME=/"},
			has: map[string][]string{"write": {"/git/"}, "read": {"/gh/"}}, empty: []string{"except"}, note: "not followed to /"},
		{name: "exception holding the home", extra: exceptAll, env: []string{"XDG_CONFIG_HOME=/home/u"},
			has: map[string][]string{"write": {"~/git/"}}, empty: []string{"except"}, note: "holds the home or the project"},
		{name: "exception holding the project", extra: func(pol *policy.Policy) {
			pol.ExceptRead = append(pol.ExceptRead, policy.PathRule{Pattern: "~/.config/p/"})
		}, env: []string{"XDG_CONFIG_HOME=/home/u"}, empty: []string{"except"}, note: "holds the home or the project"},
		{name: "exception in the project", extra: exceptAll, env: []string{"XDG_CONFIG_HOME=/home/u/p/.cfg"},
			has: map[string][]string{"except": {"~/p/.cfg/"}}},
		{name: "not a valid pattern", env: []string{"XDG_CONFIG_HOME=/srv/a*b"}, empty: []string{"read", "write"}, note: "/srv/a*b/gh/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, notes := followEnv(compile(t, tc.extra), home, proj, tc.env, nil)
			lists := map[string][]api.RunRule{"read": r.Read, "write": r.Write, "exec": r.Exec, "except": r.ExceptRead}
			for list, want := range tc.has {
				for _, w := range want {
					if !slices.Contains(patterns(lists[list]), w) {
						t.Errorf("%s lacks %s: %q", list, w, patterns(lists[list]))
					}
				}
			}
			for list, not := range tc.hasnt {
				for _, w := range not {
					if slices.Contains(patterns(lists[list]), w) {
						t.Errorf("%s holds %s: %q", list, w, patterns(lists[list]))
					}
				}
			}
			for _, list := range tc.empty {
				if len(lists[list]) > 0 {
					t.Errorf("%s: %q, want none", list, patterns(lists[list]))
				}
			}
			if tc.note != "" && !strings.Contains(strings.Join(notes, "\n"), tc.note) {
				t.Errorf("notes %q lack %q", notes, tc.note)
			}
			if tc.note == "" && len(notes) > 0 {
				t.Errorf("notes: %q", notes)
			}
			for list, rules := range lists {
				for _, rule := range rules {
					// Each is a pattern the agent takes, and says which
					// rule it follows.
					if err := policy.CheckPattern(rule.Pattern); err != nil {
						t.Errorf("%s %s: %v", list, rule.Pattern, err)
					}
					if !strings.HasPrefix(rule.By, "$XDG_") || !strings.Contains(rule.By, " in place of ~/.") && !strings.Contains(rule.By, " in place of /home/u/.") {
						t.Errorf("%s %s: by %q", list, rule.Pattern, rule.By)
					}
				}
			}
		})
	}
	// The followed rules say what they follow.
	r, _ := followEnv(compile(t, nil), home, proj, []string{"XDG_CONFIG_HOME=/srv/cfg"}, nil)
	if i := slices.IndexFunc(r.Write, func(x api.RunRule) bool { return x.Pattern == "/srv/cfg/git/" }); i < 0 || r.Write[i].By != "$XDG_CONFIG_HOME in place of ~/.config/git/" {
		t.Errorf("the rule for git: %+v", r.Write)
	}
	if got := describeEnv(r); !strings.Contains(got, "$XDG_CONFIG_HOME (/srv/cfg)") || !strings.Contains(got, "read-only") {
		t.Errorf("describeXDG = %q", got)
	}
	if got := xdgDataHome([]string{"XDG_DATA_HOME=/srv/u//data/"}); got != filepath.Clean("/srv/u/data") {
		t.Errorf("xdgDataHome = %q", got)
	}
}

// A $XDG_CONFIG_HOME that is a symlink is followed where it leads, as the
// LSM backend matches resolved paths; one that leads to ~/.config adds
// nothing.
func TestXDGRulesSymlink(t *testing.T) {
	home := t.TempDir()
	real := filepath.Join(home, "dotfiles", "config")
	for _, d := range []string{real, filepath.Join(home, ".config")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, to := range map[string]string{"cfg": real, "same": filepath.Join(home, ".config")} {
		if err := os.Symlink(to, filepath.Join(home, link)); err != nil {
			t.Fatal(err)
		}
	}
	c := compileDefaults(t, home, filepath.Join(home, "p"))
	r, _ := followEnv(c, home, filepath.Join(home, "p"), []string{"XDG_CONFIG_HOME=" + filepath.Join(home, "cfg")}, filepath.EvalSymlinks)
	if !slices.ContainsFunc(r.Write, func(x api.RunRule) bool { return x.Pattern == "~/dotfiles/config/git/" }) {
		t.Errorf("the link is not followed where it leads: %+v", r.Write)
	}
	r, _ = followEnv(c, home, filepath.Join(home, "p"), []string{"XDG_CONFIG_HOME=" + filepath.Join(home, "same")}, filepath.EvalSymlinks)
	if r.count() > 0 {
		t.Errorf("a link to ~/.config adds rules: %+v", r)
	}
}

// The tool state the sandbox may write beneath ~/.config and
// ~/.local/state follows $XDG_CONFIG_HOME and $XDG_STATE_HOME (go's
// telemetry, the tools' state), never to a directory that is or holds the
// home, a config or data home or ~/.local/bin, which would make all of it
// writable; and the telemetry directory of a go on the PATH is made when
// missing.
func TestXDGWritable(t *testing.T) {
	const home = "/home/u"
	for _, c := range []struct {
		name           string
		env            map[string]string
		writable, make []string
	}{
		{"unset", nil, nil, nil},
		{"relative", map[string]string{"XDG_CONFIG_HOME": "cfg", "XDG_STATE_HOME": "st"}, nil, nil},
		{"the defaults", map[string]string{"XDG_CONFIG_HOME": home + "/.config/", "XDG_STATE_HOME": home + "/.local/state"}, nil, nil},
		{"moved", map[string]string{"XDG_CONFIG_HOME": home + "/cfg", "XDG_STATE_HOME": "/srv/u/state/"},
			[]string{home + "/cfg/go/telemetry", "/srv/u/state"}, []string{"/srv/u/state"}},
		{"state is the home", map[string]string{"XDG_STATE_HOME": home}, nil, nil},
		{"state holds the home", map[string]string{"XDG_STATE_HOME": "/home"}, nil, nil},
		{"state holds ~/.local/bin", map[string]string{"XDG_STATE_HOME": home + "/.local"}, nil, nil},
		{"state is ~/.config", map[string]string{"XDG_STATE_HOME": home + "/.config"}, nil, nil},
		{"state is the config home", map[string]string{"XDG_CONFIG_HOME": home + "/c", "XDG_STATE_HOME": home + "/c"},
			[]string{home + "/c/go/telemetry"}, nil},
		{"state holds the data home", map[string]string{"XDG_DATA_HOME": home + "/x/data", "XDG_STATE_HOME": home + "/x"}, nil, nil},
		{"config is the home", map[string]string{"XDG_CONFIG_HOME": home}, []string{home + "/go/telemetry"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, mk := xdgWritable(home, func(k string) string { return c.env[k] })
			if !slices.Equal(w, c.writable) || !slices.Equal(mk, c.make) {
				t.Errorf("writable %q, made %q; want %q, %q", w, mk, c.writable, c.make)
			}
		})
	}

	// go's telemetry directory: made only for a go on the PATH, where
	// XDG_CONFIG_HOME says, and not when it exists.
	h := t.TempDir()
	bin := filepath.Join(h, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PATH": "/nonexistent:" + bin}
	getenv := func(k string) string { return env[k] }
	if d := goTelemetryDir(h, getenv); d != "" {
		t.Errorf("no go on the PATH, made %s", d)
	}
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if d, want := goTelemetryDir(h, getenv), filepath.Join(h, ".config/go/telemetry"); d != want {
		t.Errorf("go on the PATH: made %q, want %q", d, want)
	}
	env["XDG_CONFIG_HOME"] = filepath.Join(h, "cfg")
	want := filepath.Join(h, "cfg/go/telemetry")
	if d := goTelemetryDir(h, getenv); d != want {
		t.Errorf("XDG_CONFIG_HOME: made %q, want %q", d, want)
	}
	if opts := landlockOptions(&policy.Policy{}, "fanotify", h, &config.Paths{ProjectRoot: bin, WorkDir: bin}, getenv); !slices.Contains(opts.Create, want) || !slices.Contains(opts.Writable, want) {
		t.Errorf("options: create %q, writable %q: want %s in both", opts.Create, opts.Writable, want)
	}
	if err := os.MkdirAll(want, 0o700); err != nil {
		t.Fatal(err)
	}
	if d := goTelemetryDir(h, getenv); d != "" {
		t.Errorf("it exists, made %s again", d)
	}
}
