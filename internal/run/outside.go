//go:build linux

package run

import (
	"os"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/userterm"
)

// OutsideRules are the rules each run adds for what of the user's lies
// outside the project and the home, as `aigate status` shows them: the
// sockets of their services and their systemd manager's unit directory
// (deny_write), their terminals (deny_read; a run whose output reaches a
// terminal keeps out the one it was started from too, since the command
// gets run's pseudo-terminal instead). Found now: a run finds them again
// when it starts.
func OutsideRules(l *config.Loaded) (write, read []api.RunRule) {
	if l.Paths.User == nil {
		return nil, nil
	}
	c, ok := statusPolicy(l)
	if !ok {
		return nil, nil
	}
	p := &runPlan{loaded: l, compiled: c, id: &identity{uid: l.Paths.User.UID, home: l.Paths.User.Home}, env: os.Environ()}
	socks, _ := socketRunRules(p)
	units, _ := userUnitRules(p)
	terms, _ := userterm.Find(p.id.uid, userterm.Places, nil)
	for _, t := range terms {
		read = append(read, api.RunRule{Pattern: t, By: "a terminal of yours"})
	}
	return append(socks, units...), read
}

// statusPolicy is l's policy compiled, for the rules a run from here would
// add that aigate status shows (ClaudeRules, GitRules, OutsideRules); false
// when it does not compile (status reports that itself).
func statusPolicy(l *config.Loaded) (*policy.Compiled, bool) {
	pol, _ := l.Policy()
	c, err := policy.Compile(pol, l.PolicyEnv())
	return c, err == nil
}
