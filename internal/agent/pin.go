//go:build linux

package agent

import "github.com/aigate-dev/aigate/internal/enforce"

// Pinner is implemented by a backend whose enforcement can outlive the
// agent: the BPF-LSM backend once internal/loader pins its programs, links
// and maps under a bpffs directory. docs/agent.md describes the contract;
// no backend implements it yet, so the agent treats every backend as one
// whose enforcement ends with it and kills the sandboxes when it stops.
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
