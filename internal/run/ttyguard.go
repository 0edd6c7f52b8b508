//go:build linux

package run

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/userterm"
)

// terminalRunRules are the deny_read rules of this run alone for the
// user's terminals other than the command's own: another terminal
// window's, a tmux pane's, an ssh session's pseudo-terminal. A sandbox of
// the same user could open one by its name, read what is typed there (a
// sudo password goes to whichever reader comes first) and write to it
// (fake output, OSC 52 to the clipboard). deny_read refuses every open,
// writes included, with a read event. The command keeps its own
// terminal (its descriptors, /dev/tty). When run puts its pseudo-terminal
// between the command and the user's terminal (filtersTerminal), the
// user's terminal is one of the others: opened by its name, it would
// take the command's output past the filter. Found before the sandbox
// exists: a terminal opened later (a new window, a console logged in on)
// is in no rule; the backends' own checks of every pty and console open
// keep it out (docs/threat-model.md).
func terminalRunRules(f *cmdutil.Factory, opts *runOptions, uid int) ([]api.RunRule, []string) {
	own := userterm.Own()
	filtered, direct := stdioTerminals(f, opts)
	for _, v := range filtered {
		if dev, ok := terminalDev(v); ok {
			delete(own, dev)
		}
	}
	for _, v := range direct {
		if dev, ok := terminalDev(v); ok {
			own[dev] = true // the command holds it anyway (stdin with stdout a pipe)
		}
	}
	terms, more := userterm.Find(uid, userterm.Places, own)
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

// stdioTerminals sorts run's standard streams: filtered are those the
// command gets only through run's pseudo-terminal (stdout a terminal:
// stdin and stderr too go through it) or a filtering pipe (stderr alone);
// direct are those it gets itself (all three with --raw-terminal or no
// terminal output; stdin when only stderr is filtered).
func stdioTerminals(f *cmdutil.Factory, opts *runOptions) (filtered, direct []any) {
	switch {
	case !filtersTerminal(f, opts):
		return nil, []any{f.In, f.Out, f.Err}
	case isTerminal(f.Out):
		return []any{f.In, f.Out, f.Err}, nil
	}
	return []any{f.Err}, []any{f.In}
}

// terminalDev is the device of v when it is a terminal.
func terminalDev(v any) (uint64, bool) {
	var st unix.Stat_t
	file, ok := v.(*os.File)
	if !ok || !isTerminal(v) || unix.Fstat(int(file.Fd()), &st) != nil {
		return 0, false
	}
	return st.Rdev, true
}
