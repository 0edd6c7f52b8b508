//go:build linux

package run

import (
	"os"
	"path/filepath"

	"github.com/aigate-dev/aigate/internal/config"
)

// muxTmpEnv gives tmux inside the sandbox a directory of the run's own
// (TMUX_TMPDIR, made as the user in the command's temp directory), so
// that a tmux server started inside does not listen at
// /tmp/tmux-UID/default: that is where the user's own tmux outside looks
// for the user's server, and a client outside that reached the sandbox's
// would hand it the user's keystrokes. It also keeps tmux inside away
// from the user's server's socket, which it would remove before starting
// its own when its connect there fails (the fanotify backend refuses
// such a connect with ENOENT). done removes the directory, as the user,
// once the command ended. When the directory cannot be made (run acting
// for another user without sudo's identity), env is returned as it is.
func muxTmpEnv(env []string, uid int, u *config.User) (out []string, done func()) {
	if os.Geteuid() != uid && (u == nil || !u.Sudo) {
		return env, func() {}
	}
	base := envValue(env, "TMPDIR")
	if !filepath.IsAbs(base) {
		base = "/tmp"
	}
	var dir string
	if err := u.Do(func() error {
		var err error
		dir, err = os.MkdirTemp(base, "aigate-tmux-")
		return err
	}); err != nil {
		return env, func() {}
	}
	return setEnv(env, "TMUX_TMPDIR", dir), func() {
		// As the user: what the sandbox left there is the user's to remove
		// (RemoveAll follows no symlink).
		_ = u.Do(func() error { return os.RemoveAll(dir) })
	}
}
