//go:build !linux && !darwin

package cmdutil

import (
	"errors"
	"runtime"

	"github.com/spf13/cobra"
)

// ErrUnsupported says why nothing can be enforced here.
var ErrUnsupported = errors.New(runtime.GOOS + " is not supported: aigate enforces its policy with BPF LSM or fanotify on Linux and with ACLs and pf on macOS")

// UnsupportedCmd keeps the command in the help, so that a user learns why
// it cannot work rather than that it does not exist.
func UnsupportedCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return &StatusError{Code: ExitNoEnforcement, Err: ErrUnsupported}
		},
	}
}
