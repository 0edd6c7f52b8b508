package cli

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

// usageError marks an error as the user's command line being wrong.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitError carries a specific exit code. A nil err means the command has
// already said everything and Main prints nothing more.
type exitError struct {
	code ExitCode
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// silentExit ends the command with code and no further message.
func silentExit(code ExitCode) error { return &exitError{code: code} }

// runError wraps what a command's run function returned, so that Main can
// tell it from the errors cobra itself returns while parsing the command
// line, which are all usage errors.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// classify turns an error from cobra's Execute into a message (empty: say
// nothing) and an exit code.
func classify(err error) (string, ExitCode) {
	if err == nil {
		return "", ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err == nil {
			return "", ee.code
		}
		return ee.err.Error(), ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return ue.Error(), ExitUsage
	}
	var re *runError
	if errors.As(err, &re) {
		return re.Error(), ExitError
	}
	return err.Error(), ExitUsage
}
