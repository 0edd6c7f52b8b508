//go:build linux

package run

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/policy"
)

// The default deny_write of ~/.local/share/applications/ follows the
// command's $XDG_DATA_HOME, where the desktop (and Claude Code's deep-link
// registration) finds applications/ then; not a relative one, which the
// XDG specification ignores, not one the default already covers, and not
// where the policy dropped the default.
func TestDataHomeRules(t *testing.T) {
	const home, proj = "/home/u", "/home/u/p"
	plan := func(t *testing.T, drop bool, env ...string) *runPlan {
		pol, _ := policy.Merge(nil, nil, false)
		if drop {
			pol.DenyWrite = slices.DeleteFunc(pol.DenyWrite, func(r policy.PathRule) bool { return r.Pattern == defaultApplications })
		}
		c, err := policy.Compile(pol, policy.Env{Home: home, ProjectRoot: proj})
		if err != nil {
			t.Fatal(err)
		}
		return &runPlan{compiled: c, id: &identity{home: home}, env: env}
	}
	pattern := func(rules []api.RunRule) []string {
		var got []string
		for _, r := range rules {
			got = append(got, r.Pattern)
		}
		return got
	}
	for _, tc := range []struct {
		name string
		drop bool
		env  []string
		want []string
	}{
		{"unset", false, nil, nil},
		{"outside the home", false, []string{"XDG_DATA_HOME=/srv/u/data/"}, []string{"/srv/u/data/applications/"}},
		{"in the home", false, []string{"XDG_DATA_HOME=/home/u/.xdg"}, []string{"/home/u/.xdg/applications/"}},
		{"the last value counts", false, []string{"XDG_DATA_HOME=/a", "XDG_DATA_HOME=/b"}, []string{"/b/applications/"}},
		{"the default's own", false, []string{"XDG_DATA_HOME=/home/u/.local/share"}, nil},
		{"already covered", false, []string{"XDG_DATA_HOME=/home/u/.local/bin"}, nil}, // by ~/.local/bin/
		{"relative", false, []string{"XDG_DATA_HOME=data"}, nil},
		{"empty", false, []string{"XDG_DATA_HOME="}, nil},
		{"default dropped", true, []string{"XDG_DATA_HOME=/srv/u/data"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := plan(t, tc.drop, tc.env...)
			rules, notes := dataHomeRules(p)
			if got := pattern(rules); !slices.Equal(got, tc.want) || len(notes) > 0 {
				t.Errorf("rules %q (notes %q), want %q", got, notes, tc.want)
			}
			// Each is a pattern the agent takes.
			for _, r := range rules {
				if err := policy.CheckPattern(r.Pattern); err != nil {
					t.Errorf("%s: %v", r.Pattern, err)
				}
			}
		})
	}
	if got := xdgDataHome([]string{"XDG_DATA_HOME=/srv/u//data/"}); got != filepath.Clean("/srv/u/data") {
		t.Errorf("xdgDataHome = %q", got)
	}
}
