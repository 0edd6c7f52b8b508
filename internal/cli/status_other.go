//go:build !linux

package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/doctor"
)

func addStatusFlags(*cobra.Command, *statusOptions) {}

// doctorAgent: no agent outside Linux.
func doctorAgent() *doctor.Agent { return nil }

// askAgent: the agent and its API are Linux's; elsewhere a run enforces by
// itself (macOS: ACLs and pf).
func askAgent(context.Context, string) (*StatusAgent, []StatusSandbox, string) {
	return nil, nil, "no agent on this system: aigate run enforces by itself"
}
