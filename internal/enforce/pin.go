package enforce

// Pinner is implemented by a backend whose enforcement can outlive the
// agent: backend.Pinned, the BPF-LSM backend opened with a PinPath, whose
// programs, links and maps (network part included) are pinned under a
// bpffs directory. With one the agent keeps a record per sandbox and a
// restarted agent adopts the sandboxes a dead one left (agent/adopt.go,
// docs/agent.md). A clean stop still ends them. Each of backend.Pinned's
// two parts implements it too: the BPF-LSM part (lsm.Backend with a
// PinPath) and the network part (egress.Egress over a loader.Net with a
// PinPath, whose Adopted gives only the IDs).
type Pinner interface {
	Backend
	// PinDir is the bpffs directory holding the pins.
	PinDir() string
	// Adopted lists the sandboxes found in the pinned maps when the backend
	// was opened: a restarted agent takes them over instead of sweeping
	// them.
	Adopted() []Sandbox
	// Claim hands an adopted sandbox its recompiled policy (from the
	// sources the agent kept): the network part rewrites its rules and
	// DNS steering from it.
	Claim(sb *Sandbox) error
	// Release closes the backend but leaves the pins, so enforcement goes
	// on without the agent (Close removes them).
	Release() error
}

// LinkHolder is implemented by a backend whose enforcement is held by a
// process that outlives aigate (fanotify's guard). HoldLinks hands it
// duplicates of the descriptors of links that attach a sandbox's other
// programs (the network part's, see LinkSource), which it keeps until the
// sandbox at cgroupPath is dead: otherwise they would detach the moment
// aigate dies, before the sandbox is killed.
type LinkHolder interface {
	HoldLinks(cgroupPath string, fds []int) error
}

// LinkSource is implemented by a part whose programs are attached per
// sandbox by links this process holds (the network part): LinkFDs returns
// their descriptors for sandbox id, for a LinkHolder.
type LinkSource interface {
	LinkFDs(id uint32) []int
}
