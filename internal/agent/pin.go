//go:build linux

package agent

import "github.com/aigate-dev/aigate/internal/enforce"

// Pinner is implemented by a backend whose enforcement can outlive the
// agent: backend.Pinned, the BPF-LSM backend opened with a PinPath, whose
// programs, links and maps (network part included) are pinned under a
// bpffs directory. With one the agent keeps a record per sandbox and a
// restarted agent adopts the sandboxes a dead one left (adopt.go,
// docs/agent.md). A clean stop still ends them.
type Pinner interface {
	enforce.Backend
	// PinDir is the bpffs directory holding the pins.
	PinDir() string
	// Adopted lists the sandboxes found in the pinned maps when the backend
	// was opened: a restarted agent takes them over instead of sweeping
	// them.
	Adopted() []enforce.Sandbox
	// Claim hands an adopted sandbox its recompiled policy (from the
	// sources the agent kept), for the rule texts of its events.
	Claim(sb *enforce.Sandbox) error
	// Release closes the backend but leaves the pins, so enforcement goes
	// on without the agent (Close removes them).
	Release() error
}
