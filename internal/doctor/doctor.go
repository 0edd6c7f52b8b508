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

// ReadmeTable is where the README says what each backend enforces and what
// it does not.
const ReadmeTable = "README.md#what-is-enforced-by-which-backend"

// Verdict states.
const (
	Usable      = "usable"
	NotUsable   = "not usable"
	NeedsRoot   = "needs root" // the check that decides could not run without root
	Unknown     = "unknown"    // could not be checked here, for another reason (Detail)
	Confined    = "confined"   // unix sockets
	NotConfined = "not confined"
)

// Verdict is the answer for one part of enforcement: can it be used here,
// and if not, why and what to do.
type Verdict struct {
	Name   string `json:"name"`  // "bpf-lsm", "fanotify", "sock-addr", "unix-sockets"
	Title  string `json:"title"` // for humans: "BPF LSM", "network (cgroup sock_addr)"
	State  string `json:"state"` // Usable, NotUsable, NeedsRoot, Unknown; Confined or NotConfined for unix sockets
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

// BackendInfo is one backend that `backend: auto` chooses from.
type BackendInfo struct {
	Name string `json:"name"` // BackendLSM or BackendFanotify
	// State is Usable, NotUsable, NeedsRoot or Unknown: the worst verdict
	// of the parts it needs.
	State string `json:"state"`
	// Enforces is one line on what it enforces; ReadmeTable has the rest.
	Enforces string `json:"enforces"`
}

// Report is the result of Run.
type Report struct {
	Checks []Check `json:"checks"`
	// Verdicts say which parts of enforcement can be used here.
	Verdicts []Verdict `json:"verdicts,omitempty"`
	// Backends are the backends auto chooses from, strongest first.
	Backends []BackendInfo `json:"backends,omitempty"`
	// NeedRoot names the checks that were not run because they need root.
	NeedRoot []string `json:"need_root,omitempty"`
	// Backend is the enforcement backend `backend: auto` would choose,
	// or "" when neither can run on this kernel.
	Backend string `json:"backend"`
	// Ready is true when some backend can run; running it still needs root.
	Ready bool `json:"ready"`
	// Agent is the running agent, when one answered.
	Agent *Agent `json:"agent,omitempty"`
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
	// RememberedLSM returns the refusal of BPF LSM that a root run
	// recorded this boot (as a *ProbeError), or nil. Asked only without
	// root, where ProbeLSM cannot run; nil skips it.
	RememberedLSM func() error
	// ProbeFanotify proves that fanotify permission events work: a group
	// of class FAN_CLASS_CONTENT, a permission mark on a test file, an
	// open of it answered with a denial. nil skips the check (the kernel
	// config then decides).
	ProbeFanotify func() error
	// ProbeSockAddr loads a trivial cgroup/connect4 program and attaches
	// it to a test cgroup: both backends enforce the network with these
	// programs. nil skips the check.
	ProbeSockAddr func() error
	// ProbeUnix says how unix-socket connections are confined here, and
	// returns an error when they are not. nil skips the check.
	ProbeUnix func() (string, error)
	// LandlockABI returns the kernel's Landlock ABI (0: none). nil skips
	// the check.
	LandlockABI func() int
	// LandlockAudit says whether Landlock's refusals reach the kernel's
	// audit records (llaudit.Reporting); it needs root. nil skips it.
	LandlockAudit func() string
	// Mount allows Run to mount securityfs when it is missing (root only).
	Mount bool
	// Agent is the running agent as it answered on its socket; nil when
	// none runs. Without root it is the only proof of a backend.
	Agent *Agent
}

// Agent is what the running agent said about itself, or why it could not
// be asked.
type Agent struct {
	Socket  string `json:"socket"`
	PID     int    `json:"pid,omitempty"`
	Backend string `json:"backend,omitempty"`
	// Denied: the socket exists but this user may not connect (not in the
	// agent's group); Backend and PID are then unknown.
	Denied bool `json:"denied,omitempty"`
	// Landlock says whether it reports the sandboxes' Landlock refusals
	// as events, and if not why ("" from an older agent).
	Landlock string `json:"landlock,omitempty"`
}

// ProbeError is a probe's refusal with what to do about it, so that the
// report can show the reason and the fix apart (ProbeLSM's typed errors
// are turned into it).
type ProbeError struct {
	Reason string
	Fix    string
	Err    error // the underlying error, if any
}

func (e *ProbeError) Error() string {
	if e.Fix == "" {
		return e.Reason
	}
	return e.Reason + "; " + e.Fix
}

func (e *ProbeError) Unwrap() error { return e.Err }

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}
