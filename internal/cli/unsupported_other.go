//go:build !linux && !darwin

package cli

import (
	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// newSetupCmd stands in for the Linux and macOS command.
func newSetupCmd(f *cmdutil.Factory) *cobra.Command {
	return cmdutil.UnsupportedCmd("setup", "Prepare the machine for aigate run (Linux and macOS only)")
}

// ResetAgentPlan is empty: aigate installs nothing system-wide here.
func ResetAgentPlan() []string { return nil }

// ResetAgent is never reached (the plan is empty) and says why if it is.
func ResetAgent(*cmdutil.Factory) error { return cmdutil.ErrUnsupported }
