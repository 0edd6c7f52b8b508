//go:build !linux && !darwin

package run

import (
	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// NewCmd stands in for the Linux and macOS command.
func NewCmd(*cmdutil.Factory) *cobra.Command {
	return cmdutil.UnsupportedCmd("run [flags] -- COMMAND [ARG...]", "Run a command in a sandbox (Linux and macOS only)")
}
