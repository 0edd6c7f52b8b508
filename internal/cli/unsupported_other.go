//go:build !linux && !darwin

package cli

import (
	"errors"
	"runtime"

	"github.com/spf13/cobra"
)

// newRunCmd and newSetupCmd stand in for the Linux and macOS commands.
func newRunCmd(f *Factory) *cobra.Command {
	return unsupportedCmd("run [flags] -- COMMAND [ARG...]", "Run a command in a sandbox (Linux and macOS only)")
}

func newSetupCmd(f *Factory) *cobra.Command {
	return unsupportedCmd("setup", "Prepare the machine for aigate run (Linux and macOS only)")
}

// errUnsupported says why nothing can be enforced here.
var errUnsupported = errors.New(runtime.GOOS + " is not supported: aigate enforces its policy with BPF LSM or fanotify on Linux and with ACLs and pf on macOS")

// unsupportedCmd keeps the command in the help, so that a user learns why
// it cannot work rather than that it does not exist.
func unsupportedCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return &exitError{ExitNoEnforcement, errUnsupported}
		},
	}
}

// ResetAgentPlan is empty: aigate installs nothing system-wide here.
func ResetAgentPlan() []string { return nil }

// ResetAgent is never reached (the plan is empty) and says why if it is.
func ResetAgent(*Factory) error { return errUnsupported }
