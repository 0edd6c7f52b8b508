//go:build linux

package api

import (
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Version is the protocol version this client speaks. A server refuses
// requests of a version it does not speak with CodeVersion, so that a
// client and an agent from different releases fail loudly instead of
// misreading each other.
//
// Version 2 streams may fold identical denials into one event with a
// count (events.Event.Count) and carry events in binary batches
// (evframe.go); the agent still answers version 1 requests, whose
// streams carry one JSON message per denial as before. A
// version 1 agent refuses a version 2 client (CodeVersion, whose message
// says to restart the agent).
//
// Version 3 lets create carry the pid of the waiting exec helper
// (CreateRequest.Place): the agent moves it in while it builds the
// sandbox, and the create's answer means placed, with no place round
// trip. Clients of versions 1 and 2 send place after create as before;
// a version 2 agent refuses a version 3 client (CodeVersion). Version 3
// streams also carry events.Event.MovedTo (a ninth string in a batch, a
// field in JSON), which a reader of an older version would refuse.
//
// Version 4 lets create carry deny_read rules of the run alone
// (CreateRequest.DenyRead: the user's other terminals); a version 3
// agent refuses a version 4 client (CodeVersion) instead of a create
// with a field it does not know.
//
// Version 5 lets create name Claude Code's state directory moved by
// $CLAUDE_CONFIG_DIR (ClaudeJSONGuard.ConfigDir), whose .claude.json the
// agent guards too; a version 4 agent refuses a version 5 client instead
// of leaving that file unguarded. Version 5 creates may also carry the
// Landlock domain the command will enter (CreateRequest.Landlock), which a
// version 4 agent would not know.
//
// Version 6 lets create carry Claude Code's IDE lock directories and the
// ports their locks name (CreateRequest.IDELocks), which the agent keeps
// the sandbox's listeners off; a version 5 agent refuses a version 6
// client instead of leaving those ports open to the sandbox.
//
// Version 7 lets create carry deny_exec and except_read rules of the run
// alone (CreateRequest.DenyExec, ExceptRead: the policy's rules beneath
// ~/.config and ~/.local/share followed to the user's XDG base
// directories); a version 6 agent refuses a version 7 client instead of
// a create with fields it does not know.
const Version = 7

// PlacesAtCreate reports whether a create of version v may carry the
// process to place (CreateRequest.Place).
func PlacesAtCreate(v int) bool { return v >= 3 }

// MovesAside reports whether a stream of version v may carry
// events.Event.MovedTo: older readers refuse a batch with a ninth string,
// and version 1's JSON decoder refuses unknown fields.
func MovesAside(v int) bool { return v >= 3 }

// MinVersion is the oldest version the agent still answers.
const MinVersion = 1

// Folds reports whether a stream of version v may fold identical denials
// into one event with a count: clients before 2 know no Count field (they
// refuse unknown fields).
func Folds(v int) bool { return v >= 2 }

// DefaultSocket is where the agent listens.
const DefaultSocket = "/run/aigate/aigate.sock"

// MaxMessage bounds one message in either direction. Two config files fit
// many times over; anything larger is a client bug or an attack.
const MaxMessage = 1 << 20

// Op names a request.
type Op string

const (
	OpStatus Op = "status" // the agent's state
	OpList   Op = "list"   // the sandboxes the caller may see
	OpCreate Op = "create" // create a sandbox; the connection becomes its session
	OpPlace  Op = "place"  // on a session: move the waiting child into the sandbox
	OpEnd    Op = "end"    // end a sandbox (kill what runs in it, remove it)
	OpWatch  Op = "watch"  // stream the events the caller may see
	OpTrust  Op = "trust"  // read or change the caller's trust records
	OpPolicy Op = "policy" // compare or accept the caller's global policy
)

// Request is every message a client sends. Exactly the field of Op is set.
type Request struct {
	V      int            `json:"v"`
	Op     Op             `json:"op"`
	Create *CreateRequest `json:"create,omitempty"`
	Place  *PlaceRequest  `json:"place,omitempty"`
	End    *EndRequest    `json:"end,omitempty"`
	Watch  *WatchRequest  `json:"watch,omitempty"`
	Trust  *TrustRequest  `json:"trust,omitempty"`
	Policy *PolicyRequest `json:"policy,omitempty"`
}

// File is a config file as the client read it. The agent parses it itself,
// with the same parser as everywhere else; the path is only for messages.
type File struct {
	Path string `json:"path"`
	Data []byte `json:"data"` // base64 in JSON
}

// CreateRequest asks for a sandbox confined by the policy that the given
// config files make. The policy is the caller's own choice for their own
// sandbox (they could as well run the tool without aigate), so the agent
// takes the files and the trust decision from the client; what it never
// takes from the client is who the caller is (SO_PEERCRED decides).
type CreateRequest struct {
	// Global is ~/.aigate/config.yaml; nil means the built-in defaults.
	Global *File `json:"global,omitempty"`
	// Project is the nearest .aigate.yaml, nil when there is none.
	Project *File `json:"project,omitempty"`
	// Trust is the project file's trust state in the caller's trust store:
	// "trusted", "changed" or "untrusted".
	Trust string `json:"trust,omitempty"`
	// Home and ProjectRoot anchor "~/" and relative patterns.
	Home        string `json:"home"`
	ProjectRoot string `json:"project_root"`
	// Mode overrides the policy's mode ("audit" for run --audit).
	Mode policy.Mode `json:"mode,omitempty"`
	// Owner is the uid the sandbox belongs to. Only root may name another
	// user (sudo aigate run acts for the user who ran sudo); for everyone
	// else it must be empty or their own uid.
	Owner *uint32 `json:"owner,omitempty"`
	// Command is what will run, for list and status output only.
	Command []string `json:"command,omitempty"`
	// Path is the caller's $PATH: exec name rules (curl) are resolved in
	// its directories as well as the standard ones, not in the agent's.
	Path string `json:"path,omitempty"`
	// DenyWrite are deny_write rules for this run only, added to the
	// policy's: the files Claude Code's settings name that a claude
	// outside would run, and its auto memory (package claudestate). They
	// only tighten the policy, so any caller may send them.
	DenyWrite []RunRule `json:"deny_write,omitempty"`
	// DenyRead are deny_read rules for this run only (every open
	// refused), added to the policy's: the user's terminals other than
	// the run's own (package userterm). Version 4.
	DenyRead []RunRule `json:"deny_read,omitempty"`
	// DenyExec are deny_exec rules for this run only, added to the
	// policy's. Version 7.
	DenyExec []RunRule `json:"deny_exec,omitempty"`
	// ExceptRead are except_read entries for this run only, added to the
	// policy's: absolute paths (no name or glob) beneath which deny_read
	// name and glob rules do not match, the policy's own exceptions
	// followed where the user's environment moves the files they name
	// (XDG_CONFIG_HOME, GNUPGHOME...: run.followEnv). They loosen the caller's own sandbox only (the
	// agent refuses "/" and requests from inside a sandbox). Version 7.
	ExceptRead []RunRule `json:"except_read,omitempty"`
	// ClaudeJSON asks the agent to record Home's .claude.json before the
	// command starts and, once the sandbox's processes are dead, to put
	// back what they changed in the keys that make a claude outside run
	// programs or allow tools (package claudejson), with an event. The
	// agent reads and writes the file with the owner's identity only.
	ClaudeJSON *ClaudeJSONGuard `json:"claude_json,omitempty"`
	// AfterRun asks the agent to check, once the sandbox's processes are
	// dead, what no rule could protect during the run: the git
	// directories made in the project (defused, package gitdirs) and
	// Claude Code's marketplace clones (moved aside when changed). The
	// agent does it also when the client died (a kill -9 of `aigate
	// run`), and a journal makes it survive the agent; it works with the
	// owner's identity only, and what it did is in Ended.Notes.
	AfterRun *AfterRun `json:"after_run,omitempty"`
	// LandlockCovers are deny_write trees (the user's caches) that the
	// command's Landlock domain confines to landlock.AccessFixed: nothing
	// can be linked, renamed or symlinked in or out of them (run checks it
	// with landlock.Covered, and the exec helper again before the command
	// starts, refusing to start it otherwise). The fanotify backend then
	// protects them by their directory marks alone, without an inode mark
	// per file. Only the caller's own sandbox is loosened by a false claim
	// (requests from inside a sandbox are refused).
	LandlockCovers []string `json:"landlock_covers,omitempty"`
	// Landlock is the Landlock domain the command will enter on this
	// kernel (landlock.Plan, Effective; zero: none), by backend name (the
	// client learns the backend from the answer): the agent reports the
	// domain's refusals from the calls that failed (internal/refused),
	// where the kernel's audit does not. A false claim changes only which
	// of the caller's own sandbox's refused calls are reported (requests
	// from inside a sandbox are refused).
	Landlock map[string]landlock.Ruleset `json:"landlock,omitempty"`
	// IDELocks are Claude Code's IDE lock directories and the ports
	// their locks named when run read them, as the user: a loopback
	// connection to a listener of the sandbox on such a port is refused,
	// also for locks written during the run (the agent watches the
	// directories). They only tighten the policy. Version 6.
	IDELocks *IDELocks `json:"ide_locks,omitempty"`
	// Place, from version 3, names the caller's waiting exec helper
	// (launch.Prepare) for the agent to move into the sandbox while it
	// builds it, with the same checks as a place request. A create that
	// carries it is answered only once the process is in the sandbox and
	// the sandbox's enforcement is complete; the connection is then a
	// placed session (no place request follows). When it cannot be
	// placed, the create is refused and the sandbox removed, with the
	// process in it killed.
	Place *PlaceRequest `json:"place,omitempty"`
}

// IDELocks is CreateRequest.IDELocks.
type IDELocks struct {
	// Dirs are the ide/ directories a claude outside follows
	// (~/.claude/ide, the one in $CLAUDE_CONFIG_DIR), absolute.
	Dirs []string `json:"dirs"`
	// Locks are the lock files found in them, <dir>/<port>.lock.
	Locks []IDELock `json:"locks,omitempty"`
}

// IDELock is one of IDELocks.Locks.
type IDELock struct {
	Port uint16 `json:"port"`
	Path string `json:"path"` // the lock file, for the events
}

// ClaudeJSONGuard is CreateRequest.ClaudeJSON.
type ClaudeJSONGuard struct {
	// Keep are the folders whose trust (hasTrustDialogAccepted) may
	// change: where the run is, where the user answers claude's question.
	Keep []string `json:"keep,omitempty"`
	// ConfigDir is Claude Code's state directory moved by
	// $CLAUDE_CONFIG_DIR (absolute): its .claude.json is guarded as well.
	// Version 5.
	ConfigDir string `json:"config_dir,omitempty"`
	// DataHome is $XDG_DATA_HOME of the command's environment when it is
	// absolute (cleaned), where Claude Code registers its deep-link
	// handler in place of ~/.local/share: the agent keeps quiet its
	// refusals there as it does under ~/.local/share
	// (claudestate.Own.DataHome). An agent before it ignores it: they
	// stay reported. A false claim changes only which of the caller's own
	// sandbox's refusals are reported.
	DataHome string `json:"data_home,omitempty"`
}

// AfterRun is CreateRequest.AfterRun.
type AfterRun struct {
	// Git asks for the git directories made during the run to be
	// defused; nil: they are not checked.
	Git *GitCheck `json:"git,omitempty"`
	// Clones are the marketplace clones with their fingerprints before
	// the sandbox ("" where it could not be taken).
	Clones []ClaudeClone `json:"clones,omitempty"`
}

// GitCheck is AfterRun.Git.
type GitCheck struct {
	// Known are the project's git directories before the sandbox
	// (gitdirs.Result.GitDirs): those found at its end that are not
	// among them are new.
	Known []string `json:"known,omitempty"`
}

// ClaudeClone is one of AfterRun.Clones (claudestate.Clone and its
// claudestate.Fingerprint).
type ClaudeClone struct {
	Marketplace string   `json:"marketplace"`
	Dir         string   `json:"dir"`
	Plugins     []string `json:"plugins,omitempty"`
	Sum         string   `json:"sum,omitempty"`
}

// RunRule is one rule of a single run and what it comes from.
type RunRule struct {
	Pattern string `json:"pattern"`
	By      string `json:"by"`
	// Except are absolute paths strictly beneath Pattern (an anchored
	// path) that this rule does not cover (policy.PathRule.Except): the
	// run's own project directory in ~/.claude/projects. They loosen only
	// this rule, never another: the agent drops one that another rule
	// covers (policy.FileSet.Carve).
	Except []string `json:"except,omitempty"`
}

// PlaceRequest names the process to move into the session's sandbox: the
// caller's child, waiting in aigate's exec helper (see launch.Start).
type PlaceRequest struct {
	PID int `json:"pid"`
}

// EndRequest names the sandbox to end.
type EndRequest struct {
	Sandbox string `json:"sandbox"`
}

// WatchRequest filters the event stream; empty fields match everything.
type WatchRequest struct {
	Sandbox string      `json:"sandbox,omitempty"`
	Kind    events.Kind `json:"kind,omitempty"`
}

// Trust actions.
const (
	TrustGet    = "get"    // the caller's records
	TrustSet    = "set"    // trust Path with content SHA256
	TrustRevoke = "revoke" // forget Path
)

// TrustRequest reads or changes the trust records the agent keeps for a
// user (its own storage, which no sandbox can write). set and revoke are
// accepted only from a process outside every sandbox, and only for the
// caller's own uid (root may name Owner, acting for the user of sudo).
type TrustRequest struct {
	Action string  `json:"action"`
	Path   string  `json:"path,omitempty"`
	SHA256 string  `json:"sha256,omitempty"`
	Owner  *uint32 `json:"owner,omitempty"`
}

// TrustEntry is one trusted project file: its path and the SHA-256 of the
// content the user approved.
type TrustEntry struct {
	Path    string    `json:"path"`
	SHA256  string    `json:"sha256"`
	Trusted time.Time `json:"trusted_at"`
}

// TrustRecords answers a trust request. Held false: this agent keeps no
// trust records (an agent embedded in `sudo aigate run`); the client's own
// trust store (~/.aigate/trusted.yaml) then decides, as before.
type TrustRecords struct {
	Held    bool         `json:"held"`
	Entries []TrustEntry `json:"entries,omitempty"`
}

// Policy actions.
const (
	PolicyCheck  = "check"  // what Global loosens since the accepted record
	PolicyAccept = "accept" // record Global as the accepted policy
)

// PolicyRequest compares the caller's global config file with the record
// the agent keeps of the policy the user last accepted (check), or makes
// it the accepted one (accept). The agent keeps a record per uid and file,
// in root-owned storage beside the trust records; accept is refused to a
// process inside any sandbox, and a sandbox is refused when its global
// policy loosens the record (see CreateRequest).
type PolicyRequest struct {
	Action string `json:"action"`
	// Global is the file as the client read it; nil: it does not exist
	// and the built-in defaults apply.
	Global *File `json:"global,omitempty"`
	// Home anchors the default file (~/.aigate/config.yaml) when Global
	// is nil.
	Home string `json:"home"`
	// Edit: a command changed the file (aigate deny, allow); Base is what
	// it found before (nil: no file). The agent accepts the result only
	// when Base loosened nothing that was not accepted: a command that
	// edits one rule must not accept a change someone else made before.
	Edit bool  `json:"edit,omitempty"`
	Base *File `json:"base,omitempty"`
	// Owner, as in TrustRequest: root may act for the user of sudo.
	Owner *uint32 `json:"owner,omitempty"`
}

// PolicyState answers a policy request. Held false: this agent keeps no
// policy records (an agent embedded in `sudo aigate run`); nothing is
// compared then.
type PolicyState struct {
	Held bool `json:"held"`
	// Recorded: a record of this file existed before the request.
	Recorded bool `json:"recorded,omitempty"`
	// Accepted is when the record was made.
	Accepted time.Time `json:"accepted,omitempty"`
	// Loosened lists what Global loosens compared with the record before
	// the request (for accept: what the request accepted).
	Loosened []string `json:"loosened,omitempty"`
}

// Response is every message the agent sends: the answer to a request, or
// one item of a stream (Event, Dropped, Ended).
type Response struct {
	OK        bool          `json:"ok"`
	Error     *Error        `json:"error,omitempty"`
	Status    *Status       `json:"status,omitempty"`
	Sandboxes []SandboxInfo `json:"sandboxes,omitempty"`
	Sandbox   *SandboxInfo  `json:"sandbox,omitempty"`
	Warnings  []string      `json:"warnings,omitempty"`
	Trust     *TrustRecords `json:"trust,omitempty"`
	Policy    *PolicyState  `json:"policy,omitempty"`

	Event *events.Event `json:"event,omitempty"`
	// Dropped is how many events this stream lost since the last notice
	// because the client did not read fast enough.
	Dropped uint64 `json:"dropped,omitempty"`
	// Ended says the session's sandbox is gone.
	Ended *Ended `json:"ended,omitempty"`
}

// Error codes, stable for scripts and tests.
const (
	CodeBadRequest = "bad_request" // malformed, wrong types, missing fields
	CodeTooLarge   = "too_large"   // a message over MaxMessage
	CodeTimeout    = "timeout"     // the request did not arrive in time
	CodeVersion    = "version"     // another protocol version
	CodeForbidden  = "forbidden"   // the caller may not do this
	CodeNotFound   = "not_found"   // no such sandbox (or not the caller's)
	CodePolicy     = "policy"      // the config files are invalid, or loosen the accepted policy
	CodeLimit      = "limit"       // too many sandboxes or connections
	CodeSandbox    = "sandbox"     // creating or placing failed
	CodeInternal   = "internal"
)

// Error is a refused request. Message is for humans and says what to do.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Status describes the agent.
type Status struct {
	Version   int       `json:"version"`           // protocol
	Build     string    `json:"build"`             // aigate version
	PID       int       `json:"pid"`               // the agent's
	Started   time.Time `json:"started"`           // when it started
	Backend   string    `json:"backend"`           // lsm or fanotify
	Pinned    bool      `json:"pinned"`            // enforcement survives the agent
	Sandboxes int       `json:"sandboxes"`         // that the caller may see
	Metrics   string    `json:"metrics,omitempty"` // address of /metrics, "" when off
	// Unix says how the backend confines the sandboxes' unix-socket
	// connections (loader.UnixSocketEnforcement's text), "" when the
	// backend does not say.
	Unix string `json:"unix,omitempty"`
	// Landlock says whether the sandboxes' Landlock refusals (home
	// writes, ptrace and signals outside) are reported as events, and if
	// not why; "" from an agent that predates the field.
	Landlock string `json:"landlock,omitempty"`
}

// SandboxInfo describes one sandbox.
type SandboxInfo struct {
	Name    string      `json:"name"`
	ID      uint32      `json:"id"`
	Owner   uint32      `json:"owner"`
	Mode    policy.Mode `json:"mode"`
	Backend string      `json:"backend"`
	Created time.Time   `json:"created"`
	Placed  bool        `json:"placed"` // a process was moved in
	Procs   int         `json:"procs"`  // processes in it now
	Rules   int         `json:"rules"`
	Project string      `json:"project,omitempty"`
	Command []string    `json:"command,omitempty"`
	// Events is how many events the agent attributed to the sandbox.
	Events uint64 `json:"events"`
	// DNS is how the sandbox's allowed domains become allowed addresses:
	// "dns proxy", "periodic resolve" or "none" (egress.Mode); "" when the
	// backend does not say. DNSReason says why the proxy is not in use.
	DNS       string `json:"dns,omitempty"`
	DNSReason string `json:"dns_reason,omitempty"`
	// Userns and IOUring say whether the policy lets the sandbox create
	// user namespaces (allow_userns) and use io_uring (allow_io_uring);
	// the exec helper's seccomp filter refuses them otherwise on the
	// fanotify backend.
	Userns  bool `json:"userns,omitempty"`
	IOUring bool `json:"io_uring,omitempty"`
	// UsernsHook: the backend refuses user namespaces in the kernel
	// (enforce.UserNamespaces), so the helper's filter need not.
	UsernsHook bool `json:"userns_hook,omitempty"`
}

// Ended is the last message of a session.
type Ended struct {
	Reason string `json:"reason"` // "empty", "ended", "agent_shutdown"
	// Events is how many events the agent attributed to the sandbox.
	Events uint64 `json:"events"`
	// KernelDropped is how many events the backend dropped, of any
	// sandbox (its kernel buffer was full: which sandbox's is not known),
	// while this one's command ran. Sent to clients of version 2 only.
	KernelDropped uint64 `json:"kernel_dropped,omitempty"`
	// Notes say what the agent did once the sandbox ended
	// (CreateRequest.AfterRun), for the user. Sent to clients of
	// version 2 on.
	Notes []string `json:"notes,omitempty"`
}
