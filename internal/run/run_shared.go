//go:build linux || darwin

package run

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/aigate-dev/aigate/internal/config"
)

// runSignals catches, for the length of a run, the signals run handles
// itself: SIGINT and SIGQUIT from the terminal reach the command directly
// (same process group) and must not end aigate before it has cleaned up;
// SIGTERM and SIGHUP are sent to aigate alone and end the command. Caught
// (not ignored) signals are reset to their defaults in the command by
// execve. stop ends the catching.
func runSignals() (sigs chan os.Signal, stop func()) {
	sigs = make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP)
	return sigs, func() { signal.Stop(sigs) }
}

// openEventsFile opens --events for appending, with the file-system
// identity of invoker, the user run acts for (config.User.Do; Linux only:
// elsewhere it stays root's): --events /etc/passwd, or a path through a
// directory symlink the sandboxed tool planted, must not have root append
// to or create a file the user could not. A file it creates is handed to
// uid and gid when chown is set.
func openEventsFile(path string, invoker *config.User, chown bool, uid, gid int) (*os.File, error) {
	var statErr error
	f, err := config.AsUser(invoker, func() (*os.File, error) {
		_, statErr = os.Lstat(path)
		return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	})
	if err != nil {
		if runtime.GOOS == "linux" && invoker != nil && invoker.Sudo && errors.Is(err, os.ErrPermission) {
			// Root could open it; say why run does not.
			return nil, fmt.Errorf("open events file: %w: run is root but acts for %s (uid %d: who ran sudo, or --user), "+
				"so --events is opened as %s, lest the sandboxed tool make root write where that user may not; "+
				"choose a file %s may write (e.g. in %s)", err, invoker.Name, invoker.UID, invoker.Name, invoker.Name, invoker.Home)
		}
		return nil, fmt.Errorf("open events file: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) && chown {
		_ = f.Chown(uid, gid)
	}
	return f, nil
}
