//go:build linux

package run

import (
	"strings"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/gitdirs"
	"github.com/aigate-dev/aigate/internal/policy"
)

// gitRunRules are the deny_write rules of this run alone for the git
// directories in and above the project other than those the defaults
// name (package gitdirs): a submodule's config, hooks and commondir, a
// nested repository's, a linked worktree's, the .git files pointing at
// them. Found as the user before the sandbox exists; a git directory made
// during the run is not among them (docs/threat-model.md).
// It also returns the git directories found, for the agent's check of
// those made during the run (api.GitCheck).
func gitRunRules(p *runPlan) ([]api.RunRule, []string, []string) {
	return gitRules(p.loaded, p.compiled, p.id.home)
}

// GitRules are the rules gitRunRules adds to a run from here, and what
// it cannot protect, for aigate status.
func GitRules(l *config.Loaded) ([]api.RunRule, []string) {
	c, ok := statusPolicy(l)
	if !ok {
		return nil, nil
	}
	rules, notes, _ := gitRules(l, c, l.Paths.User.Home)
	return rules, notes
}

func gitRules(l *config.Loaded, compiled *policy.Compiled, home string) ([]api.RunRule, []string, []string) {
	res := scanGit(l.Paths, home)
	entries := make([]api.RunRule, 0, len(res.Entries))
	for _, e := range res.Entries {
		entries = append(entries, api.RunRule{Pattern: e.Pattern, By: e.By})
	}
	rules, notes := newRunRules(compiled, home, entries)
	return rules, append(res.Notes, notes...), res.GitDirs
}

// scanGit walks the project for its git directories as the user.
func scanGit(paths *config.Paths, home string) gitdirs.Result {
	var res gitdirs.Result
	_ = paths.User.Do(func() error {
		res = gitdirs.Scan(gitdirs.Options{ProjectRoot: paths.ProjectRoot, Home: home})
		return nil
	})
	return res
}

// describeGitRules is run's line about them, one group per git
// directory: "~/p/.git/modules/sub (submodule sub): hooks/, config, ...".
func describeGitRules(rules []api.RunRule) string {
	if len(rules) == 0 {
		return ""
	}
	var order []string
	names := map[string][]string{}
	for _, r := range rules {
		if _, ok := names[r.By]; !ok {
			order = append(order, r.By)
		}
		if strings.HasPrefix(r.By, r.Pattern+" ") {
			continue // a .git file: By names it
		}
		name := r.Pattern[strings.LastIndex(strings.TrimSuffix(r.Pattern, "/"), "/")+1:]
		names[r.By] = append(names[r.By], name)
	}
	groups := make([]string, 0, len(order))
	for _, by := range order {
		if len(names[by]) == 0 {
			groups = append(groups, by)
			continue
		}
		groups = append(groups, by+": "+strings.Join(names[by], ", "))
	}
	return "read-only for this run, because git outside runs or follows them: " + strings.Join(groups, "; ")
}
