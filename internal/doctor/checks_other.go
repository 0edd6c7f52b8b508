//go:build !linux

package doctor

import "runtime"

// Run reports that the Linux checks do not apply; the macOS backend
// (ACLs and pf) brings its own checks.
func Run(opts Options) *Report {
	return &Report{
		Checks:  []Check{{Name: "platform", Status: Skip, Detail: "no checks for " + runtime.GOOS + " yet"}},
		Summary: "kernel checks are Linux-only",
	}
}
