package claudestate

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// CheckClones sums the clones again once the sandbox is gone (sums are
// their Fingerprints from before it, "" where none could be taken),
// moves each that changed (or cannot be summed now) to a name beside it,
// and returns what to tell the user: a clone the sandbox changed would
// reach a claude outside at the plugin's next update. The caller acts as
// the user. now names the moved directories.
func CheckClones(clones []Clone, sums []string, home string, now time.Time) []string {
	var msgs []string
	for i, c := range clones {
		before := ""
		if i < len(sums) {
			before = sums[i]
		}
		if before == "" {
			msgs = append(msgs, fmt.Sprintf("Claude Code's marketplace clone %s was not checked (%s): plugins installed from it (%s) take what a sandbox put there at their next update outside",
				tildeHome(c.Dir, home), "too large or unreadable at the start", strings.Join(c.Plugins, ", ")))
			continue
		}
		if _, err := os.Lstat(c.Dir); os.IsNotExist(err) {
			// Nothing there to install from; the next update
			// outside clones it again.
			msgs = append(msgs, fmt.Sprintf("Claude Code's marketplace clone %s was removed inside the sandbox: run `claude plugin marketplace update %s` outside aigate to fetch it again",
				tildeHome(c.Dir, home), c.Marketplace))
			continue
		}
		sum, err := Fingerprint(c.Dir)
		if err == nil && sum == before {
			continue
		}
		aside := fmt.Sprintf("%s.aigate-changed-%d", c.Dir, now.Unix())
		if rerr := os.Rename(c.Dir, aside); rerr != nil {
			msgs = append(msgs, fmt.Sprintf("Claude Code's marketplace clone %s changed inside the sandbox and could not be moved aside (%v): plugins installed from it (%s) would take that at their next update outside; remove it and run `claude plugin marketplace update %s` outside aigate",
				tildeHome(c.Dir, home), rerr, strings.Join(c.Plugins, ", "), c.Marketplace))
			continue
		}
		msgs = append(msgs, fmt.Sprintf("Claude Code's marketplace clone %s changed inside the sandbox (plugins installed from it take what is there at their next update outside: %s), so aigate moved it to %s: run `claude plugin marketplace update %s` outside aigate to fetch it again (docs/threat-model.md, \"Claude Code's state\")",
			tildeHome(c.Dir, home), strings.Join(c.Plugins, ", "), tildeHome(aside, home), c.Marketplace))
	}
	return msgs
}

// tildeHome shows path beneath home as ~/...
func tildeHome(path, home string) string {
	if rest, ok := strings.CutPrefix(path, home+"/"); ok {
		return "~/" + rest
	}
	return path
}
