//go:build linux

package run

import (
	"fmt"
	"sync"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/usersock"
)

// socketRunRules are the deny_write rules of this run alone for the unix
// sockets of the user's services outside the sandbox in the shared
// places the sandbox can write (/tmp, /var/tmp, /dev/shm, /run/user/UID):
// a tmux or screen server's, an ssh-agent's, gpg-agent's, the session
// bus. Removed or renamed away from inside, a socket of the sandbox's own
// could take its place, and the user's clients outside would talk to it
// (an ssh-add hands it the key, a tmux client the keystrokes). The LSM
// backend refuses the unlink or rename; fanotify sees it after the fact
// and kills the sandbox (a socket cannot be put back). Found as the user
// before the sandbox exists: a socket that appears later, or a name where
// none is yet (tmux's before the user starts it), is not kept
// (docs/threat-model.md).
func socketRunRules(p *runPlan) ([]api.RunRule, []string) {
	var socks []string
	var more bool
	_ = p.loaded.Paths.User.Do(func() error {
		socks, more = usersock.Find(p.id.uid, usersock.Places(p.id.uid))
		return nil
	})
	entries := make([]api.RunRule, 0, len(socks))
	for _, s := range socks {
		entries = append(entries, api.RunRule{Pattern: s, By: "a socket of your services outside the sandbox"})
	}
	rules, notes := newRunRules(p.compiled, p.id.home, entries)
	if more {
		notes = append(notes, fmt.Sprintf("more than %d of your sockets in the temp and runtime directories: the others are not kept in place", usersock.Max))
	}
	return rules, notes
}

// startSocketRunRules runs socketRunRules beside the rest of the set-up
// (the exec helper's start, the Landlock plan, the other rules of the
// request) and returns what waits for its answer. The walk reads every
// directory the user owns in /tmp, /var/tmp and /dev/shm: for root in a
// shared /tmp (231 of them on the development host) that was 8.4 ms of
// the 22 ms before the create request, one after the other with the rest.
func startSocketRunRules(p *runPlan) func() ([]api.RunRule, []string) {
	type found struct {
		rules []api.RunRule
		notes []string
	}
	ch := make(chan found, 1)
	go func() {
		rules, notes := socketRunRules(p)
		ch <- found{rules, notes}
	}()
	return sync.OnceValues(func() ([]api.RunRule, []string) {
		f := <-ch
		return f.rules, f.notes
	})
}
