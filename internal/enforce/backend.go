package enforce

import (
	"context"
	"net/netip"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Sandbox is one confined cgroup and the policy it runs under.
type Sandbox struct {
	ID         uint32 // policy id in the backend's maps; unique among live sandboxes, never 0
	Name       string // human-readable id for events and status
	CgroupID   uint64 // inode number of the cgroup v2 directory
	CgroupPath string // absolute path of the cgroup v2 directory
	Policy     *policy.Compiled
	Mode       policy.Mode

	// Home and ProjectRoot anchor the policy of this sandbox: the owner's
	// home and project. A backend that must find the files name rules
	// (".env", "*.pem") match on disk (fanotify) walks them. An agent
	// serves many users, so these are per sandbox; empty means the
	// backend's own defaults.
	Home        string
	ProjectRoot string
	// ExecDirs is where exec name rules are resolved for this sandbox;
	// nil means the backend's default (the PATH directories).
	ExecDirs []string
	// LandlockCovers are deny_write trees in which the sandbox's Landlock
	// domain refuses every link, rename and symlink (landlock.Covered): a
	// backend that protects files by inode against hard links made
	// elsewhere (fanotify) may protect these by their directories alone.
	LandlockCovers []string
	// UID is the uid the sandbox's processes run as: its owner's (the
	// agent places only the owner's own processes, which run with
	// no_new_privs). 0, root's and the zero value, says they may write
	// root's directories: the fanotify backend then spares no directory
	// its exec reports.
	UID uint32

	// Enter, when set, moves the sandbox's first process into the cgroup:
	// a helper that runs nothing of the command before the sandbox's
	// creation has returned (launch.Prepare). Add calls it at most once,
	// where the migration's wait holds up none of its own cgroup work
	// (the first write to cgroup.procs waits for an RCU grace period),
	// returns only after it returned, and fails when it failed. A backend
	// that does not call it leaves it to the caller, after Add.
	Enter func() error `json:"-"`
}

// Counter is one exact violation count, kept by the backend independently of
// the event stream so that it stays exact when events are dropped.
type Counter struct {
	Kind  events.Kind
	Op    events.Op
	Audit bool
	Value uint64
}

// Stats is a snapshot of a backend's counters.
type Stats struct {
	Violations    []Counter
	EventsDropped uint64
}

// Backend enforces policies on sandbox cgroups.
type Backend interface {
	// Name is "lsm" or "fanotify".
	Name() string
	// Add starts enforcing sb's policy on its cgroup. When Add returns nil,
	// every process placed in the cgroup is confined (sb.Enter's too).
	Add(ctx context.Context, sb *Sandbox) error
	// Remove stops enforcing for the sandbox and frees its map entries.
	Remove(id uint32) error
	// Events delivers denials until Close. The channel is closed by Close.
	Events() <-chan events.Event
	// Stats reads the exact counters.
	Stats() (Stats, error)
	// Close detaches everything the backend attached, unless it was pinned
	// for an agent restart, and releases its resources.
	Close() error
}

// Limited is implemented by a backend that cannot enforce every rule of
// some policies. Unenforced names each such rule of sb's policy, in words
// for the user, so that no rule is shown as enforced when it is not.
type Limited interface {
	Unenforced(sb *Sandbox) []string
}

// Flusher is a Backend that can say when the events it has produced so far
// are out of its Events channel, so that the agent ends a sandbox's session
// just after its last event rather than after a guessed delay.
type Flusher interface {
	// Flush returns a count N such that once N events in all have been
	// received from Events, every event the backend produced before the
	// call (a denial already answered, a record already in a ring buffer)
	// has been received, or dropped and counted as such.
	Flush(ctx context.Context) (uint64, error)
}

// DomainNamer is implemented by a backend that knows, beyond what the
// kernel reports, which domain a network event's address was resolved for
// (the egress part, through the sandbox's DNS proxy). The agent asks it
// when it names an event; backends never name their own events.
type DomainNamer interface {
	DomainOf(cgroupID uint64, addr netip.Addr) string
}

// UnixSockets is implemented by a backend that confines unix-socket
// connections. UnixSockets says how, in words for `aigate status` (the
// hook and what it matches: the peer, or the socket's name), or why it
// cannot ("none: ..."): the two ways do not protect equally.
type UnixSockets interface {
	UnixSockets() string
}

// UnixOwner is implemented by a backend that records the unix socket
// names its sandboxes bind (the fanotify backend's network object).
// SandboxBound reports whether the socket file at the absolute path name,
// of device dev and inode number ino (as stat(2) gives them), is bound by
// a live socket that a process of sandbox cgroupID bound itself; pid is
// the process whose refusal is looked into (its network namespace holds
// the socket). An error means it could not tell.
type UnixOwner interface {
	SandboxBound(cgroupID uint64, pid uint32, name string, dev, ino uint64) (bool, error)
}

// RefusalReporter is implemented by a backend that sends the calls of
// sandboxed tasks that Landlock may have refused as candidates
// (events.Event.Refused), for the agent to judge. RefusalsReported is
// nil when it does, else why not.
type RefusalReporter interface {
	RefusalsReported() error
}

// IDEPorts is implemented by a backend that can keep a sandbox's
// listening sockets from the loopback ports that Claude Code's IDE lock
// files name (docs/threat-model.md, "A stale IDE lock"). GuardIDEPort
// makes a loopback connection to a listener of sandbox id on port fail,
// with a net event whose rule is IDELockRule|port.
type IDEPorts interface {
	GuardIDEPort(id uint32, port uint16) error
}

// IDELockRule flags the rule id of an event that IDEPorts caused: it
// names no rule of the policy but the IDE lock file of the port in its
// low 16 bits (the kernel's enum aigate_rule_flag, checked by a loader
// test).
const IDELockRule = 1 << 31

// UserNamespaces is implemented by a backend that can refuse new user
// namespaces in the kernel itself (allow_userns: false), with events.
// Where RefusesUserNamespaces is false, or a backend does not implement
// it, the exec helper's seccomp filter refuses them, without events.
type UserNamespaces interface {
	RefusesUserNamespaces() bool
}
