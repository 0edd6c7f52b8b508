//go:build !linux

package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
)

// unenforced: the macOS backend's limits are in docs/macos.md.
func unenforced(*config.Loaded, string) []string { return nil }

func addStatusFlags(*cobra.Command, *statusOptions) {}

// askAgent: the agent and its API are Linux's; elsewhere a run enforces by
// itself (macOS: ACLs and pf).
func askAgent(context.Context, string) (*StatusAgent, []StatusSandbox, string) {
	return nil, nil, "no agent on this system: aigate run enforces by itself"
}

// claudeState: the macOS backend protects the defaults' ~/.claude paths
// only; $CLAUDE_CONFIG_DIR is not followed there (docs/macos.md).
func claudeState(*config.Loaded, *policy.Policy) StatusClaudeState {
	return StatusClaudeState{Dirs: []string{}}
}

// claudeRules: the macOS backend adds no rules of Claude Code's settings.
func claudeRules(*config.Loaded) ([]StatusRule, []string) { return nil, nil }

// gitRules: nor of git directories.
func gitRules(*config.Loaded) ([]StatusRule, []string) { return nil, nil }

// outsideRules: nor of the user's sockets, unit directory or terminals.
func outsideRules(*config.Loaded) (write, read []StatusRule) { return nil, nil }

// envRules: nor follows the places the environment moves files to.
func envRules(*config.Loaded) (read, write, exec, exceptRead []StatusRule) { return nil, nil, nil, nil }

// followedRule: there are none.
func followedRule(StatusRule) string { return "" }
