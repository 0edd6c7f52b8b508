package doctor

// Status is the outcome of one check.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn" // works, but with less than full protection or features
	Fail Status = "fail" // a backend cannot run until this is fixed
	Skip Status = "skip" // could not be checked here (reason in Detail)
)

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	// Fix is what to do, as commands where there are any; empty when OK.
	Fix string `json:"fix,omitempty"`
}

// Backend names, as in the config's backend: key.
const (
	BackendLSM      = "lsm"
	BackendFanotify = "fanotify"
)

// Report is the result of Run.
type Report struct {
	Checks []Check `json:"checks"`
	// Backend is the enforcement backend `backend: auto` would choose,
	// or "" when neither can run on this kernel.
	Backend string `json:"backend"`
	// Ready is true when some backend can run; running it still needs root.
	Ready bool `json:"ready"`
	// Summary is one sentence for status output.
	Summary string `json:"summary"`
}

// Options are the inputs of Run; the zero value of each field means "this
// machine".
type Options struct {
	// Root prefixes /sys, /proc and /boot, so tests can supply a fake tree.
	Root string
	// Release is the kernel release (uname -r); "" asks the kernel.
	Release string
	Euid    int
	// ProbeLSM tries to load and attach a trivial BPF LSM program: the only
	// way to know that an "active" BPF LSM really works (a hypervisor or
	// lockdown can still refuse trampolines). nil skips the check.
	ProbeLSM func() error
	// Mount allows Run to mount securityfs when it is missing (root only).
	Mount bool
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}
