//go:build !linux

package cli

import (
	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// The agent and watch are Linux only: macOS runs each sandbox from
// `aigate run` itself, without an agent to watch. nil leaves them out of the
// command list.
func newAgentCmd(*cmdutil.Factory) *cobra.Command { return nil }

func newWatchCmd(*cmdutil.Factory) *cobra.Command { return nil }
