package agent

import (
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Name fills in what a backend leaves raw in e: the name of the sandbox
// it happened in, and the rule as the user wrote it in c, the policy that
// sandbox was compiled from. It is the one place events are named: the
// agent's pump calls it for every event of a sandbox it knows; on macOS,
// where no agent runs, `aigate run` sets the session up itself and calls
// it on the session's events. This file has no build tag for that reason.
func Name(e *events.Event, sandbox string, c *policy.Compiled) {
	e.Sandbox = sandbox
	if r, ok := c.Rule(policy.RuleID(e.Rule)); ok && e.Rule != 0 {
		e.RuleText = r.Pattern
	}
}
