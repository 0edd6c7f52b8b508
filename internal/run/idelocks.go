//go:build linux

package run

import (
	"path/filepath"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/config"
)

// ideLocks are Claude Code's IDE lock directories a claude outside
// follows (~/.claude/ide and, with $CLAUDE_CONFIG_DIR, the one there) and
// the ports their locks name, read as the user before the sandbox exists:
// the agent keeps the sandbox's listeners off those ports and watches the
// directories for locks written during the run (docs/threat-model.md, "A
// stale IDE lock"). A directory that cannot be listed is still sent: the
// agent watches and lists it too; notes says why it was not read.
func ideLocks(home, claudeDir string, u *config.User) (*api.IDELocks, []string) {
	dirs := []string{filepath.Join(home, ".claude", claudestate.IDELockDir)}
	if claudeDir != "" && claudeDir != filepath.Join(home, ".claude") {
		dirs = append(dirs, filepath.Join(claudeDir, claudestate.IDELockDir))
	}
	out := &api.IDELocks{Dirs: dirs}
	var notes []string
	for _, d := range dirs {
		locks, err := config.AsUser(u, func() ([]claudestate.IDELock, error) { return claudestate.IDELocks(d) })
		if err != nil {
			notes = append(notes, err.Error())
		}
		for _, l := range locks {
			out.Locks = append(out.Locks, api.IDELock{Port: l.Port, Path: l.Path})
		}
	}
	return out, notes
}
