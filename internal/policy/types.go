package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// Access is what a file rule denies.
type Access uint8

const (
	// AccessRead denies every open of a matching file (reading implies the
	// secret leaves the file, so a read rule also refuses opens for writing).
	AccessRead Access = iota + 1
	// AccessWrite denies opens for writing (and, where a backend can, other
	// modifications such as truncate, unlink and rename).
	AccessWrite
	// AccessExec denies executing a matching file.
	AccessExec
)

func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	case AccessExec:
		return "exec"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// Source records where a rule came from, for status output and error messages.
// A zero Line means the rule is a built-in default or came from the command line.
type Source struct {
	File string
	Line int
}

func (s Source) String() string {
	switch {
	case s.File == "":
		return "built-in"
	case s.Line == 0:
		return s.File
	}
	return fmt.Sprintf("%s:%d", s.File, s.Line)
}

// NetMode is the egress policy: allow everything, or deny everything except
// the allow_net entries.
type NetMode string

const (
	NetAllow NetMode = "allow"
	NetDeny  NetMode = "deny"
)

// Mode says whether a sandbox refuses denied operations or only reports them.
type Mode string

const (
	ModeEnforce Mode = "enforce"
	ModeAudit   Mode = "audit"
)

// BackendChoice selects the enforcement backend on Linux.
type BackendChoice string

const (
	BackendAuto     BackendChoice = "auto"
	BackendLSM      BackendChoice = "lsm"
	BackendFanotify BackendChoice = "fanotify"
)

// PathRule is one deny_* or allow_* entry as written by the user.
type PathRule struct {
	Pattern string
	Source  Source
	// Except, for an anchored deny_write rule that a run adds
	// (api.RunRule.Except), are absolute paths strictly beneath it that
	// it does not cover: FileSet.Carve. Not a config key.
	Except []string
}

// Endpoint is one allow_net entry: a domain (exact or "*." wildcard) or an
// IP prefix, optionally restricted to one port.
type Endpoint struct {
	Raw      string
	Domain   string       // lower case, no trailing dot; empty for IP entries
	Wildcard bool         // "*.example.com": every name below example.com, not example.com itself
	Prefix   netip.Prefix // valid when Domain is empty; a single address is a /32 or /128
	Port     uint16       // 0 means any port
	Source   Source
}

// ResourceLimits caps what a sandbox may consume. Zero means unlimited.
type ResourceLimits struct {
	MaxMemory     uint64 // bytes
	MaxCPUPercent uint32 // 100 = one full CPU
	MaxPIDs       uint32
	// Required (resource_limits.if_unavailable: refuse) makes a limit the
	// cgroup v2 hierarchy cannot apply refuse the run; otherwise it warns.
	Required bool
}

// Config is one parsed configuration file, before merging. Pointer fields are
// nil when the file does not set them.
type Config struct {
	Path string

	DenyRead  []PathRule
	DenyWrite []PathRule
	DenyExec  []PathRule
	// AllowRead, AllowWrite and AllowExec remove entries that an earlier
	// (global or default) layer denies. In a project file they loosen the
	// policy and so need trust.
	AllowRead  []PathRule
	AllowWrite []PathRule
	AllowExec  []PathRule
	// ExceptRead lists known-public content (package caches, virtualenvs,
	// node_modules, public keys) that deny_read name and glob rules do not
	// cover: see FileSet.Except. In a project file it loosens the policy.
	ExceptRead []PathRule

	Net      *NetMode
	NetLine  int
	AllowNet []Endpoint

	Mode     *Mode
	ModeLine int
	Backend  *BackendChoice

	ResourceLimits *ResourceLimits
	MaskOutput     []PathRule // regular expressions, in Pattern

	BackendLine int
	// AllowLoopback is nil when the file does not set allow_loopback.
	AllowLoopback     *LoopbackMode
	AllowLoopbackLine int
	// AllowInbound is nil when the file does not set allow_inbound.
	AllowInbound     *bool
	AllowInboundLine int
	// AllowUserns is nil when the file does not set allow_userns.
	AllowUserns     *bool
	AllowUsernsLine int
	// AllowIOUring is nil when the file does not set allow_io_uring.
	AllowIOUring     *bool
	AllowIOUringLine int
	// AllowLoopbackTrue records the spelling allow_loopback: true, read as
	// LoopbackOwn; Merge warns so that the user writes own or all instead.
	AllowLoopbackTrue bool
	// AllowUnix lists the unix socket paths a sandbox may connect to
	// (patterns, like the file rules). Loosening.
	AllowUnix []PathRule
	// Writable lists paths ("~/..." or absolute) that stay writable in a
	// home otherwise read-only inside a sandbox. In a project file it
	// loosens the policy and so needs trust.
	Writable []PathRule
	// SharedCaches names the tools (CacheTools) whose caches the sandbox
	// shares with the user instead of having its own. Loosening.
	SharedCaches []PathRule
	// DNS holds the dns: settings for the DNS proxy; nil when unset.
	DNS     *DNS
	DNSLine int
	// DenyEnv names the variables removed from the command's environment;
	// AllowEnv keeps variables a DenyEnv entry would remove (loosening).
	DenyEnv  []PathRule
	AllowEnv []PathRule
	// LimitLines records the line of each resource_limits key; a zero line
	// means the key is absent, so that "max_pids: 0" (unlimited, a
	// loosening) can be told from "not set".
	LimitLines LimitLines
}

// LimitLines holds the line of each resource_limits key, 0 when absent.
type LimitLines struct {
	MaxMemory     int
	MaxCPUPercent int
	MaxPIDs       int
	IfUnavailable int
}

// DNS configures how long the DNS proxy keeps resolved allow_net addresses:
// record TTLs are clamped to [MinTTL, MaxTTL]. Zero means the proxy's default.
type DNS struct {
	MinTTL time.Duration
	MaxTTL time.Duration
}

// Warning is a non-fatal problem found while merging, such as a loosening
// entry dropped from an untrusted project file.
type Warning struct {
	Source Source
	Msg    string
}

func (w Warning) String() string {
	return w.Source.String() + ": " + w.Msg
}

// LoopbackMode is the value of allow_loopback: which services listening on
// loopback addresses (127.0.0.0/8, ::1) a sandbox may connect to, besides
// the loopback ports allow_net lists. DNS is steered to aigate's proxy
// whatever it says.
type LoopbackMode string

const (
	// LoopbackNone: none (allow_loopback: false).
	LoopbackNone LoopbackMode = "false"
	// LoopbackOwn: the sockets that processes of the same sandbox created,
	// such as a dev server or a test database it started (the default).
	LoopbackOwn LoopbackMode = "own"
	// LoopbackAll: every listener on the machine's loopback addresses,
	// including the user's own databases, browsers and other projects'
	// servers (what allow_loopback: true meant before own existed).
	LoopbackAll LoopbackMode = "all"
)

// rank orders the modes from the tightest to the loosest.
func (m LoopbackMode) rank() int {
	switch m {
	case LoopbackNone:
		return 0
	case LoopbackOwn:
		return 1
	}
	return 2
}

// Policy is the effective policy after merging the global and project
// layers. Every rule keeps its Source.
type Policy struct {
	DenyRead   []PathRule
	DenyWrite  []PathRule
	DenyExec   []PathRule
	ExceptRead []PathRule
	Net        NetMode
	AllowNet   []Endpoint
	Mode       Mode
	Backend    BackendChoice
	Limits     ResourceLimits
	MaskOutput []PathRule

	Env EnvPolicy // deny_env, allow_env

	Loopback  LoopbackMode // allow_loopback
	Inbound   bool         // allow_inbound
	Userns    bool         // allow_userns
	IOUring   bool         // allow_io_uring
	AllowUnix []PathRule   // unix socket paths a sandbox may connect to
	// Writable are the paths beneath the home, besides the project and
	// the built-in tool state, that a sandbox may write (Landlock).
	Writable []PathRule
	// SharedCaches names the tools whose caches a sandbox shares with the
	// user (shared_caches); every other CacheTools entry gets its own.
	SharedCaches []PathRule
	DNS          DNS
	// Where the scalar settings came from (built-in when no file set them).
	NetSource      Source
	ModeSource     Source
	BackendSource  Source
	LoopbackSource Source
	InboundSource  Source
	UsernsSource   Source
	IOUringSource  Source
}

// Env is what compiling needs to know about the invoking user and project:
// "~/" expands to Home and anchored patterns are relative to ProjectRoot.
type Env struct {
	Home        string
	ProjectRoot string
}

// RuleID identifies a user-visible rule in a Compiled policy. It is what the
// kernel reports in events; 0 is never a valid rule.
type RuleID uint32

// Rule describes one compiled rule for events and status output.
type Rule struct {
	ID      RuleID
	Access  Access // zero for network rules
	Pattern string // as the user wrote it
	Source  Source
}

// Entry is one value in a compiled rule set, tagged with the rule it came from.
type Entry struct {
	Value string
	Rule  RuleID
}

// FileSet holds the flat rule sets for one Access. A path matches the set
// when any of the following holds:
//
//   - Paths: the path equals an entry or lies beneath it (entry + "/").
//   - Names: some component of the path (the final one included) equals the
//     entry, so the named file or directory and everything beneath it match.
//   - NamePrefix: the final component starts with the entry.
//   - NameSuffix: the final component ends with the entry.
//
// Paths are absolute and clean; names never contain "/".
//
// Except, when set, holds exceptions (except_read) with the same semantics:
// a path that Except matches is not matched by Names, NamePrefix or
// NameSuffix. Paths entries are never excepted: ~/.ssh/ stays denied with
// "*.pub" excepted, while id_rsa* no longer denies ./keys/id_rsa.pub.
//
// Compile indexes the sets it returns, so that matching costs the same
// whatever the number of entries; their entries must not be changed in
// place afterwards. A set built by hand, or whose slices were replaced or
// appended to, is matched correctly but indexed again on every call.
type FileSet struct {
	Paths      []Entry
	Names      []Entry
	NamePrefix []Entry
	NameSuffix []Entry
	Except     *FileSet
	// Carve are paths strictly beneath a Paths entry (Entry.Rule is that
	// entry's rule) that it does not cover: a path that is one or lies
	// beneath one is not matched by a Paths entry shorter than it. A
	// longer Paths entry beneath a carve matches again. Compile keeps a
	// carve only where no other Paths entry is it or lies above it, so a
	// carve never uncovers what another rule denies.
	Carve []Entry

	idx *setIndex // built by Compile (reindex); see index.go
}

// NetEntry is one allowed IP prefix, optionally for one port only.
type NetEntry struct {
	Prefix netip.Prefix
	Port   uint16 // 0 means any port
	Rule   RuleID
}

// DomainEntry is one allowed domain name, to be turned into addresses by a
// resolver or the DNS proxy.
type DomainEntry struct {
	Name     string
	Wildcard bool
	Port     uint16
	Rule     RuleID
}

// NetPolicy is the compiled egress policy. A destination is refused when it
// matches Deny. A loopback destination (LoopbackPrefixes) is then allowed
// when Loopback is LoopbackAll, when it matches Allow (a listed port), or
// when Loopback is LoopbackOwn and the socket it reaches was created in the
// same sandbox; else it is refused by LoopbackRule, in both modes. Any other
// destination is allowed when Mode is NetAllow or when it matches Allow (or
// an address resolved from Domains); everything else is refused.
type NetPolicy struct {
	Mode     NetMode
	Loopback LoopbackMode // which loopback listeners are reachable
	// LoopbackRule is the rule reported when a loopback destination is
	// refused ("allow_loopback: own"); 0 when Loopback is LoopbackAll.
	LoopbackRule RuleID
	// Inbound lets the sandbox's listening sockets accept connections from
	// other hosts under net: deny (net: allow always does).
	Inbound bool
	Deny    []NetEntry    // always refused: cloud metadata addresses unless allow_net lists them
	Allow   []NetEntry    // IP entries from allow_net
	Domains []DomainEntry // domain entries from allow_net
	// DenyRule is the rule reported when a connection is refused because
	// nothing allowed it ("net: deny"). It is 0 when Mode is NetAllow.
	DenyRule RuleID
	// Unix holds the allow_unix patterns: the unix socket paths a sandbox
	// may connect to, with FileSet semantics.
	Unix FileSet
}

// Compiled is a merged policy reduced to the flat sets that the BPF maps,
// the fanotify backend and the macOS generator consume.
type Compiled struct {
	Rules  []Rule // Rules[i].ID == RuleID(i+1)
	Read   FileSet
	Write  FileSet
	Exec   FileSet
	Net    NetPolicy
	Mode   Mode
	Limits ResourceLimits
	Mask   []*regexp.Regexp

	Backend BackendChoice
	DNS     DNS
	// Env says which variables aigate removes from the command's
	// environment before it starts (not a kernel rule).
	Env EnvPolicy
	// Userns lets the sandbox's processes create user namespaces
	// (allow_userns). Without them a sandboxed process cannot mount,
	// so it cannot bind a directory over a name a rule or allow_unix
	// matches.
	Userns bool
	// IOUring lets the sandbox's processes use io_uring
	// (allow_io_uring); only the fanotify backend refuses it, where its
	// socket operation would bypass the seccomp family filter.
	IOUring bool
}

// Rule returns the rule with the given id, or false.
func (c *Compiled) Rule(id RuleID) (Rule, bool) {
	if id == 0 || int(id) > len(c.Rules) {
		return Rule{}, false
	}
	return c.Rules[id-1], true
}
