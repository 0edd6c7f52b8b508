//go:build linux

package run

import (
	"fmt"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/userterm"
)

// terminalRunRules are the deny_read rules of this run alone for the
// user's terminals other than the run's own: another terminal window's,
// a tmux pane's, an ssh session's pseudo-terminal, a console the user is
// logged in on. A sandbox of the same user could open one by its name,
// read what is typed there (a sudo password goes to whichever reader
// comes first) and write to it (fake output, OSC 52 to the clipboard).
// deny_read refuses every open, writes included, with a read event. The
// command keeps its own terminal (its descriptors, /dev/tty). Found
// before the sandbox exists: a terminal opened later (a new window)
// is not kept out (docs/threat-model.md).
func terminalRunRules(uid int) ([]api.RunRule, []string) {
	terms, more := userterm.Find(uid, userterm.Places, userterm.Own())
	rules := make([]api.RunRule, 0, len(terms))
	for _, t := range terms {
		rules = append(rules, api.RunRule{Pattern: t, By: "another terminal of yours"})
	}
	var notes []string
	if more {
		notes = append(notes, fmt.Sprintf("more than %d of your terminals: the others are not kept out", userterm.Max))
	}
	return rules, notes
}
