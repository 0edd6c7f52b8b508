package cli

// The real probes doctor and status run, as root; probe_linux.go sets them.
// They stay nil where there is nothing to probe, and doctor then skips the
// check.
var (
	// lsmProbe loads, attaches and runs a trivial BPF LSM program.
	lsmProbe func() error
	// rememberedLSM is the BPF-LSM refusal a root run recorded this boot.
	rememberedLSM func() error
	// fanotifyProbe has an open of a test file reported and denied by a
	// fanotify permission mark.
	fanotifyProbe func() error
	// sockAddrProbe loads a trivial cgroup/connect4 program and attaches it
	// to a test cgroup.
	sockAddrProbe func() error
	// unixProbe says how unix sockets are confined, with an error when
	// they are not.
	unixProbe func() (string, error)
	// landlockABI is the kernel's Landlock ABI version.
	landlockABI func() int
	// landlockAudit says whether Landlock's refusals reach audit.
	landlockAudit func() string
)
