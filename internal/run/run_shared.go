//go:build linux || darwin

package run

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/mask"
	"github.com/aigate-dev/aigate/internal/policy"
)

// The steps of `aigate run` that Linux (run.go) and macOS (run_darwin.go)
// take alike, written once. Their errors carry the exit code the user
// sees (cmdutil.StatusError), so that the two runRun functions only order
// the steps. This file is built for both (linux || darwin) and for no
// other system, where run is a stub (unsupported_other.go).

// loadConfig reads the merged configuration (global and project files,
// and the project's trust); a file that does not parse is a bad policy:
// the command is not started.
func loadConfig(f *cmdutil.Factory) (*config.Loaded, error) {
	loaded, err := f.Load()
	if err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	return loaded, nil
}

// compilePolicy compiles the policy run enforces; a rule that does not
// compile is a bad policy: the command is not started.
func compilePolicy(pol *policy.Policy, env policy.Env) (*policy.Compiled, error) {
	compiled, err := policy.Compile(pol, env)
	if err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	return compiled, nil
}

// compileMask compiles the policy's mask_output expressions (nil matcher:
// none) and returns where aigate's own lines go while the command runs:
// masked too, since an event's target or command line may hold a secret.
func compileMask(f *cmdutil.Factory, compiled *policy.Compiled) (*mask.Matcher, *lineWriter, error) {
	masker, err := mask.Compile(compiled.Mask)
	if err != nil {
		return nil, nil, &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	return masker, &lineWriter{w: f.Err, m: masker}, nil
}

// openEvents opens --events (path "" for none: a nil writer) before the
// sandbox exists, so that a path run may not write to stops the run
// before anything is set up. The arguments are openEventsFile's. close
// is always safe to call.
func openEvents(path string, invoker *config.User, chown bool, uid, gid int) (w io.Writer, close func(), err error) {
	if path == "" {
		return nil, func() {}, nil
	}
	ef, err := openEventsFile(path, invoker, chown, uid, gid)
	if err != nil {
		return nil, func() {}, &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: err}
	}
	return ef, func() { _ = ef.Close() }, nil
}

// refusing is the error of a run that ends before (or instead of)
// starting command: what went wrong, under the exit code that says why.
func refusing(code cmdutil.ExitCode, command string, err error) error {
	return &cmdutil.StatusError{Code: code, Err: fmt.Errorf("refusing to run %s: %w", command, err)}
}

// signalExit is run's status when signal s ended it, as a shell reports
// a command a signal killed: 128+s.
func signalExit(s syscall.Signal) error {
	return cmdutil.SilentExit(cmdutil.ExitCode(128 + int(s)))
}

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
