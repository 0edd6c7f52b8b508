//go:build !linux && !darwin

package doctor

import "runtime"

// Run reports that aigate cannot enforce anything here: it has a Linux
// backend (BPF LSM or fanotify) and a macOS one (ACLs and pf), nothing else.
func Run(opts Options) *Report {
	return &Report{
		Checks: []Check{{
			Name:   "platform",
			Status: Fail,
			Detail: runtime.GOOS + " is not supported: aigate enforces on Linux (BPF LSM, fanotify) and macOS (ACLs, pf)",
		}},
		Summary: "not ready: aigate cannot enforce a policy on " + runtime.GOOS,
	}
}
