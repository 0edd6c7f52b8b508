package events

import (
	"net/netip"
	"time"
)

// Kind is the family of the blocked operation.
type Kind string

const (
	KindFile Kind = "file"
	KindExec Kind = "exec"
	KindNet  Kind = "net"
	KindProc Kind = "process"
)

// Op is the blocked operation within its Kind.
type Op string

const (
	OpRead    Op = "read"    // open of a deny_read file
	OpWrite   Op = "write"   // open for writing (or truncate, unlink, rename) of a deny_write file
	OpExec    Op = "exec"    // execve of a deny_exec file
	OpConnect Op = "connect" // connect(2) to a refused destination
	OpSend    Op = "send"    // sendto/sendmsg without a prior connect
	OpDNS     Op = "dns"     // a DNS query for a name the policy does not allow
	OpUnix    Op = "unix"    // connect to a unix socket outside the sandbox
	OpPtrace  Op = "ptrace"  // ptrace, /proc/PID/mem|environ|..., process_vm_readv of a process outside the sandbox
	OpSignal  Op = "signal"  // a signal to a process outside the sandbox
	OpUserns  Op = "userns"  // a new user namespace, refused unless allow_userns
	// OpReceive is a socket created outside the sandbox (not a unix
	// socket) that a sandboxed process received (SCM_RIGHTS, pidfd_getfd,
	// seccomp's addfd). Without BPF LSM nothing could check what it
	// connects or sends to, so the process was killed as it received it.
	OpReceive Op = "receive"
	// OpRename is a rename of a deny_write path, or of a directory above
	// one, that the backend saw only after it happened (fanotify). A
	// protected file replaced or moved away was put back (Event.Restored)
	// and the sandbox goes on; otherwise nothing was undone and the
	// sandbox was killed.
	OpRename Op = "rename"
	// OpDelete is an unlink or rmdir of a deny_write path, or of a
	// directory above one, seen after the fact (fanotify), with the same
	// outcome as OpRename: the file put back (Event.Restored) or the
	// sandbox killed.
	OpDelete Op = "delete"
	// OpTruncate is a truncate(2) of a deny_write file, which needs no
	// open and so no permission (fanotify), seen after the fact: the
	// sandbox was killed, and where the backend held a copy of the
	// content it was written back (Event.Restored).
	OpTruncate Op = "truncate"
	// OpChange is a change to a file the sandbox may write whose guarded
	// entries aigate checks once the sandbox ended (the MCP servers and
	// approvals of Claude Code's ~/.claude.json): put back (Restored), the
	// keys named in RuleText.
	OpChange Op = "change"
	// OpPlanted is an entry found in a protected place (a deny_write
	// path, or beneath one) that was not there before, after the sandbox
	// that removed or replaced a directory above it was killed
	// (fanotify: rm -rf .git and a prepared .git copied in): moved aside
	// to Event.MovedTo, or, when MovedTo is empty, it could not be (the
	// agent's log says why).
	OpPlanted Op = "planted"
	// OpOpen is an open of a deny_read path that fanotify could only see
	// after it happened, the sandbox then killed: another terminal of the
	// user, which a permission event would have the agent open itself
	// (internal/fanotify/terminal.go).
	OpOpen Op = "open"
)

// AfterTheFact reports whether op is one the backend could not refuse and
// saw only after it happened (fanotify's renames, deletes, truncates): the event
// says what was done about it (Event.Restored, or the sandbox killed).
func (op Op) AfterTheFact() bool {
	return op == OpRename || op == OpDelete || op == OpTruncate || op == OpChange || op == OpPlanted || op == OpOpen
}

// BackendLandlock is the Backend of a refusal by a sandbox's Landlock
// domain (packages llaudit and refused), which no backend's hook saw.
const BackendLandlock = "landlock"

// Event is one denial. Backends fill what they know; zero fields are unknown.
type Event struct {
	Time     time.Time      `json:"time"`
	Sandbox  string         `json:"sandbox,omitempty"`
	CgroupID uint64         `json:"cgroup_id"`
	PID      uint32         `json:"pid"`  // thread id
	TGID     uint32         `json:"tgid"` // process id
	UID      uint32         `json:"uid"`
	Comm     string         `json:"comm"`
	Kind     Kind           `json:"kind"`
	Op       Op             `json:"op"`
	Path     string         `json:"path,omitempty"` // file and exec events, unix socket path, "pid N (comm)" of a process event
	Addr     netip.AddrPort `json:"addr,omitzero"`  // net events
	Domain   string         `json:"domain,omitempty"`
	Rule     uint32         `json:"rule_id,omitempty"`
	RuleText string         `json:"rule,omitempty"`  // the pattern as written, filled from the policy
	Audit    bool           `json:"audit,omitempty"` // allowed because the sandbox is in audit mode
	Backend  string         `json:"backend,omitempty"`
	// Restored: an OpRename or OpDelete whose protected file was put back
	// with its content from before, and the sandbox not killed; or an
	// OpTruncate whose content was written back after the kill.
	Restored bool `json:"restored,omitempty"`
	// Rescan: found by the scan after the fanotify watcher's queue
	// overflowed, not by an event; the process that did it is unknown.
	Rescan bool `json:"rescan,omitempty"`
	// MovedTo is where an OpPlanted entry was moved aside to (a
	// quarantine directory the user can inspect).
	MovedTo string `json:"moved_to,omitempty"`
	// Count, when over 1, is how many identical denials this event stands
	// for (every field but Time and Count equal; Time is the first's). The
	// agent folds a denial into an identical one its client has not read
	// yet, so a flood costs the stream one event, not one per denial. 0
	// and 1 both mean one denial: use N.
	Count uint64 `json:"count,omitempty"`
	// Refused, set by a backend, makes the event a candidate rather than
	// a denial: a system call of a sandboxed task that failed with the
	// errno a Landlock refusal gives (bpf/include/refused.h). The agent
	// keeps it, as a Landlock event, only where it can show that the
	// sandbox's Landlock domain refused it (internal/refused); it never
	// leaves the agent.
	Refused *Refused `json:"-"`
}

// Refused is what the kernel saw of a refused call besides the event's
// common fields (struct refused_call, and the event's mnt_ns).
type Refused struct {
	Nr     uint32 // x86_64 system call number
	Target int32  // the pid or tid the call named; a path call's dirfd
	Flags  uint32 // open flags, mknod mode, unlinkat flags
	GID    uint32 // the caller's gid
	MntNS  uint32 // the caller's mount namespace (inode number), for a path
	// The caller's effective capabilities that let it past Unix
	// permissions (in the initial user namespace only).
	DACOverride, DACReadSearch, Kill, SysPtrace bool
}

// N is how many denials e stands for: Count, or 1 when it is not set.
func (e *Event) N() uint64 { return max(e.Count, 1) }

// SameDenial reports whether e and o are the same denial at another time:
// every field but Time and Count equal. Such events may be folded into one
// with their counts added.
func (e *Event) SameDenial(o *Event) bool {
	// Field by field, the cheap ones first: a reader behind a flood asks
	// this of every record (TestSameDenialEveryField keeps it complete).
	return e.PID == o.PID && e.Op == o.Op && e.CgroupID == o.CgroupID && e.Addr == o.Addr &&
		e.TGID == o.TGID && e.UID == o.UID && e.Rule == o.Rule && e.Kind == o.Kind &&
		e.Audit == o.Audit && e.Restored == o.Restored && e.Rescan == o.Rescan &&
		e.Path == o.Path && e.Comm == o.Comm && e.Sandbox == o.Sandbox && e.Domain == o.Domain &&
		e.RuleText == o.RuleText && e.Backend == o.Backend && e.MovedTo == o.MovedTo &&
		e.Refused == nil && o.Refused == nil
}
