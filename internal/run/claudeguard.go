//go:build linux

package run

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
)

// makeToolDirs makes the tool-state directories aigate creates when
// missing (landlock.DefaultCreate) before the sandbox exists, as the
// user: among them are the protected ones of ~/.claude (plugins/cache,
// skills, ...), which the LSM backend would refuse to the command's own
// start inside, and which the fanotify backend watches only if they exist
// when it marks the home. Best effort, as the command's start inside is.
// Only as the user (aigate run as the user, or under sudo acting as the
// user): directories root made would be root's, and claude could not
// write them; the command's start inside still makes them then.
func makeToolDirs(home string, uid int, u *config.User) {
	if home == "" || (os.Geteuid() != uid && (u == nil || !u.Sudo)) {
		return
	}
	_ = u.Do(func() error {
		for _, d := range landlock.DefaultCreate {
			_ = landlock.CreateMissing(landlock.Options{Home: home, Create: []string{d}})
		}
		return nil
	})
}

// claudeRunRules are the deny_write rules of this run alone (package
// claudestate): the scripts Claude Code's settings name, read as the user
// before the sandbox exists, without those a deny_write rule already
// covers or that are no valid pattern.
func claudeRunRules(p *runPlan) ([]api.RunRule, []string) {
	return claudeRules(p.loaded, p.compiled, p.id.home)
}

// ClaudeRules are the rules claudeRunRules adds to a run from here, and
// what it cannot protect, for aigate status.
func ClaudeRules(l *config.Loaded) ([]api.RunRule, []string) {
	pol, _ := l.Policy()
	c, err := policy.Compile(pol, l.PolicyEnv())
	if err != nil {
		return nil, nil
	}
	return claudeRules(l, c, l.Paths.User.Home)
}

func claudeRules(l *config.Loaded, compiled *policy.Compiled, home string) ([]api.RunRule, []string) {
	if home == "" {
		return nil, nil
	}
	paths := l.Paths
	var res claudestate.Result
	_ = paths.User.Do(func() error {
		res = claudestate.Scan(claudestate.Options{Home: home, ProjectRoot: paths.ProjectRoot, Managed: claudestate.ManagedSettings})
		return nil
	})
	entries := make([]api.RunRule, 0, len(res.Entries))
	for _, e := range res.Entries {
		entries = append(entries, api.RunRule{Pattern: e.Pattern, By: e.By})
	}
	rules, notes := newRunRules(compiled, home, entries)
	return rules, append(res.Uncovered, notes...)
}

// newRunRules keeps of entries ("~/..." or absolute patterns) those no
// deny_write rule of the policy covers yet and that are valid patterns;
// the notes name the invalid ones.
func newRunRules(compiled *policy.Compiled, home string, entries []api.RunRule) ([]api.RunRule, []string) {
	var rules []api.RunRule
	var notes []string
	for _, e := range entries {
		abs := strings.TrimSuffix(e.Pattern, "/")
		if rest, ok := strings.CutPrefix(abs, "~/"); ok {
			abs = filepath.Join(home, rest)
		}
		if _, ok := compiled.Write.Match(abs); ok {
			continue
		}
		if err := policy.CheckPattern(e.Pattern); err != nil {
			notes = append(notes, fmt.Sprintf("%s (%s): %v", e.Pattern, e.By, err))
			continue
		}
		rules = append(rules, e)
	}
	return rules, notes
}

// describeRunRules is run's line about them.
func describeRunRules(rules []api.RunRule) string {
	if len(rules) == 0 {
		return ""
	}
	named := make([]string, 0, len(rules))
	for _, r := range rules {
		named = append(named, fmt.Sprintf("%s (%s)", r.Pattern, r.By))
	}
	return "read-only for this run, because a claude outside the sandbox runs them: " + strings.Join(named, ", ")
}
