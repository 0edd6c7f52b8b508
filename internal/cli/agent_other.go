//go:build !linux

package cli

import "github.com/spf13/cobra"

// The agent and watch are Linux only: macOS runs each sandbox from
// `aigate run` itself, without an agent to watch. nil leaves them out of the
// command list.
func newAgentCmd(*Factory) *cobra.Command { return nil }

func newWatchCmd(*Factory) *cobra.Command { return nil }
