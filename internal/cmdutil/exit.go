package cmdutil

import (
	"errors"
	"fmt"
)

// ExitCode is aigate's process exit status. docs/cli.md documents them;
// scripts depend on them, so never renumber one.
type ExitCode int

const (
	// ExitOK: the command did what was asked.
	ExitOK ExitCode = 0
	// ExitError: the command failed (a config file is invalid, a write
	// failed, the kernel is not ready, ...).
	ExitError ExitCode = 1
	// ExitUsage: the command line is wrong (unknown command or flag, missing
	// or invalid argument such as a pattern or domain aigate does not
	// accept), or the command refuses to act without a confirming flag.
	ExitUsage ExitCode = 2
	// Codes 3 and up are `aigate run`'s own failures; in each case the
	// command was NOT started.
	//
	// ExitNoEnforcement: no backend can enforce the policy (kernel not
	// ready, not root), so run refuses to start the command (fail closed).
	ExitNoEnforcement ExitCode = 3
	// ExitPolicy: the merged policy is invalid (a config file is wrong).
	ExitPolicy ExitCode = 4
	// ExitSandbox: setting up the sandbox failed (cgroup, backend Add,
	// starting the command).
	ExitSandbox ExitCode = 5
	// ExitNotFound: the command to run does not exist, as in shells.
	ExitNotFound ExitCode = 127
)

// UsageError marks an error as the user's command line being wrong.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// UsageErrorf formats a UsageError.
func UsageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// StatusError carries a specific exit code. A nil Err means the command has
// already said everything and Main prints nothing more.
type StatusError struct {
	Code ExitCode
	Err  error
}

func (e *StatusError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e *StatusError) Unwrap() error { return e.Err }

// SilentExit ends the command with code and no further message.
func SilentExit(code ExitCode) error { return &StatusError{Code: code} }

// RunError wraps what a command's run function returned, so that Main can
// tell it from the errors cobra itself returns while parsing the command
// line, which are all usage errors.
type RunError struct{ Err error }

func (e *RunError) Error() string { return e.Err.Error() }
func (e *RunError) Unwrap() error { return e.Err }

// Classify turns an error from cobra's Execute into a message (empty: say
// nothing) and an exit code.
func Classify(err error) (string, ExitCode) {
	if err == nil {
		return "", ExitOK
	}
	var ee *StatusError
	if errors.As(err, &ee) {
		if ee.Err == nil {
			return "", ee.Code
		}
		return ee.Err.Error(), ee.Code
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return ue.Error(), ExitUsage
	}
	var re *RunError
	if errors.As(err, &re) {
		return re.Error(), ExitError
	}
	return err.Error(), ExitUsage
}
