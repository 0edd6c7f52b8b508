package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/doctor"
	"github.com/aigate-dev/aigate/internal/policy"
)

type statusOptions struct {
	f      *cmdutil.Factory
	json   bool
	socket string // the agent's
}

func newStatusCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &statusOptions{f: f}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the effective policy, how it would be enforced now, and the live sandboxes",
		Long: `Show the policy that "aigate run" would apply here: the global config merged
with the project's .aigate.yaml (whose loosening entries count only when it
is trusted), every rule with the file and line it comes from, warnings, and
a summary of "aigate doctor".

Then how it would be enforced now: when an agent runs, the backend it
enforces with, whether its enforcement survives it (pinned), how unix
sockets are confined, and the sandboxes you may see (all of them for root)
with their owner, command, start time, backend, DNS mode and event count.
Without an agent, the backend "aigate run" would pick on this kernel.

--json prints the same as one JSON object (schema in docs/cli.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runStatus(cmd.Context(), opts) },
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print JSON")
	addStatusFlags(cmd, opts)
	return cmd
}

// Status is the --json output. Its field names are a stable interface:
// add fields, never rename or remove them.
type Status struct {
	SchemaVersion int                  `json:"schema_version"`
	Global        StatusFile           `json:"global"`
	Project       *StatusProject       `json:"project"`
	Mode          policy.Mode          `json:"mode"`
	Backend       policy.BackendChoice `json:"backend"`
	Net           policy.NetMode       `json:"net"`
	AllowLoopback bool                 `json:"allow_loopback"` // some loopback listeners reachable
	Loopback      policy.LoopbackMode  `json:"loopback"`       // which: own, all or false
	DenyRead      []StatusRule         `json:"deny_read"`
	ExceptRead    []StatusRule         `json:"except_read"`
	DenyWrite     []StatusRule         `json:"deny_write"`
	DenyExec      []StatusRule         `json:"deny_exec"`
	AllowNet      []StatusRule         `json:"allow_net"`
	AllowUnix     []StatusRule         `json:"allow_unix"`
	MaskOutput    []StatusRule         `json:"mask_output"`
	Writable      []StatusRule         `json:"writable"`
	DenyEnv       []StatusRule         `json:"deny_env"`
	AllowEnv      []StatusRule         `json:"allow_env"`
	// ToolCaches says, per tool of policy.CacheTools, whether sandboxes
	// get caches of their own (the user's deny_write) or share the
	// user's (shared_caches).
	ToolCaches []StatusToolCache `json:"tool_caches"`
	// XDGCacheHome is what aigate run sets XDG_CACHE_HOME to (the rest of
	// ~/.cache read-only inside); "" when writable: gives the sandbox
	// the user's ~/.cache.
	XDGCacheHome string `json:"xdg_cache_home"`

	// AllowUserns and AllowIOUring are allow_userns and allow_io_uring,
	// with where they were set (file "" for the built-in false).
	AllowUserns  StatusSetting `json:"allow_userns"`
	AllowIOUring StatusSetting `json:"allow_io_uring"`

	// EnvRemoved names the variables of status's own environment that
	// `aigate run` would remove from the command's.
	EnvRemoved []string `json:"env_removed"`
	// Unenforced names the rules the enforcement backend leaves alone
	// (a deny_exec name of a multi-call binary on fanotify). Always an array.
	Unenforced []string `json:"unenforced"`
	// ClaudeNotProtected names the commands of Claude Code's settings
	// whose program aigate run cannot protect (not a file it follows),
	// besides the deny_write rules it adds for the others (in DenyWrite,
	// file "each run: ...").
	ClaudeNotProtected []string `json:"claude_not_protected"`
	// ClaudeState says which Claude Code state directories aigate run
	// protects (~/.claude, and the one $CLAUDE_CONFIG_DIR moves it to).
	ClaudeState StatusClaudeState `json:"claude_state"`
	// GitNotProtected names what of the project's git directories aigate
	// run does not protect (a hooks directory in the project, a walk cut
	// short), besides the deny_write rules it adds for them (in
	// DenyWrite, file "each run: ...").
	GitNotProtected []string           `json:"git_not_protected"`
	ResourceLimits  StatusLimits       `json:"resource_limits"`
	Warnings        []StatusWarning    `json:"warnings"`
	Kernel          *doctor.Report     `json:"kernel"`
	Enforcement     *StatusEnforcement `json:"enforcement"`
	// InsideSandbox names the aigate sandbox status runs in, if any: then
	// Enforcement is what holds for this process, not the machine.
	InsideSandbox string `json:"inside_sandbox,omitempty"`
}

// StatusToolCache is one tool's caches in a sandbox.
type StatusToolCache struct {
	Tool string `json:"tool"`
	// Own lists the sandboxes' own caches ("~/.cache/aigate/go-build");
	// empty when the tool shares the user's.
	Own []string `json:"own"`
	// User lists the user's caches, deny_write inside while Own is set.
	User []string `json:"user"`
	// File and Line are the shared_caches entry that shares them.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

// toolCaches is StatusToolCache of each tool of policy.CacheTools.
func toolCaches(pol *policy.Policy) []StatusToolCache {
	out := []StatusToolCache{}
	for _, t := range policy.CacheTools {
		tc := StatusToolCache{Tool: t.Name, User: t.UserCaches, Own: []string{}}
		for _, r := range pol.SharedCaches {
			if r.Pattern == t.Name {
				tc.File, tc.Line = r.Source.File, r.Source.Line
			}
		}
		if pol.SandboxCaches(t.Name) {
			for _, o := range t.Own {
				tc.Own = append(tc.Own, "~/"+policy.SandboxCacheDir+"/"+o)
			}
		}
		out = append(out, tc)
	}
	return out
}

// xdgCacheHome is Status.XDGCacheHome for pol.
func xdgCacheHome(pol *policy.Policy) string {
	if !pol.SandboxXDGCache() {
		return ""
	}
	return "~/" + policy.XDGCacheDir
}

// StatusSetting is a boolean setting and where it was set.
type StatusSetting struct {
	Value bool   `json:"value"`
	File  string `json:"file"`
	Line  int    `json:"line"`
}

// StatusEnforcement is how the policy would be enforced now.
type StatusEnforcement struct {
	// Backend is what `aigate run` would enforce with now: the running
	// agent's, else what the config's backend choice gives on this kernel;
	// "" when nothing can enforce it.
	Backend string `json:"backend"`
	// Source is where Backend comes from: "agent" (the running agent) or
	// "kernel" (doctor's checks, as an embedded agent would choose).
	Source string `json:"source"`
	// Note explains Backend: a fallback, a mismatch with the config's
	// choice, or that it is not proven without root.
	Note string `json:"note,omitempty"`
	// Unix is how unix-socket connections are confined; "" when unknown
	// (the probe needs root and no agent said).
	Unix string `json:"unix"`
	// Pinned is true when enforcement survives the agent.
	Pinned bool `json:"pinned"`
	// Agent is the running agent; null when none answered, and then
	// AgentMessage says why.
	Agent        *StatusAgent `json:"agent"`
	AgentMessage string       `json:"agent_message,omitempty"`
	// Sandboxes are the live sandboxes the caller may see: their own, or
	// every one for root. Always an array.
	Sandboxes []StatusSandbox `json:"sandboxes"`
}

// StatusAgent is the agent that answered on Socket.
type StatusAgent struct {
	Socket  string    `json:"socket"`
	PID     int       `json:"pid"`
	Build   string    `json:"build"`
	Started time.Time `json:"started"`
	Backend string    `json:"backend"`
	Pinned  bool      `json:"pinned"`
	Unix    string    `json:"unix"`
	Metrics string    `json:"metrics"` // address of /metrics, "" when off
	// Landlock says whether the sandboxes' Landlock refusals are reported
	// as events, and if not why.
	Landlock string `json:"landlock,omitempty"`
}

// StatusSandbox is one live sandbox.
type StatusSandbox struct {
	Name    string      `json:"name"`
	Owner   uint32      `json:"owner"`
	User    string      `json:"user"` // the owner's name, "" when unknown
	Command []string    `json:"command"`
	Started time.Time   `json:"started"`
	Backend string      `json:"backend"`
	Mode    policy.Mode `json:"mode"`
	// DNS is "dns proxy", "periodic resolve" or "none" (net: allow); ""
	// when the backend does not say. DNSReason says why not the proxy.
	DNS       string `json:"dns"`
	DNSReason string `json:"dns_reason,omitempty"`
	Events    uint64 `json:"events"`
	Procs     int    `json:"procs"`
	Project   string `json:"project,omitempty"`
}

// agentTimeout bounds status's questions to the agent.
const agentTimeout = 5 * time.Second

// StatusFile is one config file.
type StatusFile struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	// Loosened lists what the file allows beyond the policy the user last
	// accepted, by the agent's record; `aigate run` refuses until the
	// user accepts it (`aigate policy accept`). Empty without a record.
	Loosened []string `json:"loosened,omitempty"`
}

// StatusProject is the project file and its trust.
type StatusProject struct {
	Path  string `json:"path"`
	Root  string `json:"root"`
	Trust string `json:"trust"` // "trusted", "untrusted" or "changed"
}

// StatusRule is one rule and where it came from. File is "" and Line 0 for
// the built-in defaults.
type StatusRule struct {
	Value string `json:"value"`
	File  string `json:"file"`
	Line  int    `json:"line"`
}

// StatusLimits are the resource limits; 0 means unlimited.
type StatusLimits struct {
	MaxMemory     uint64 `json:"max_memory"`
	MaxCPUPercent uint32 `json:"max_cpu_percent"`
	MaxPIDs       uint32 `json:"max_pids"`
}

// StatusWarning is a merge warning.
type StatusWarning struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Message string `json:"message"`
}

func runStatus(ctx context.Context, o *statusOptions) error {
	l, err := o.f.Load()
	if err != nil {
		return err
	}
	if _, inside := cmdutil.InsideSandbox(); !inside {
		// The trust that a run would apply: the agent's records when it
		// keeps them, not a store in ~/.aigate a sandbox could forge.
		if err := cmdutil.AgentTrustState(o.f, l, o.socket); err != nil {
			o.f.Warnf("%v; the project's trust shown is that of %s", err, l.Paths.Pretty(l.Paths.Trust))
		}
	}
	st := buildStatus(l, o.f.Doctor(false))
	if _, inside := cmdutil.InsideSandbox(); !inside {
		global := policyFile{path: l.Paths.Global, data: l.GlobalData}
		if ps, err := askAgentPolicy(o.f, l.Paths, o.socket, policyAsk{action: "check", global: global}); err != nil {
			o.f.Warnf("ask the aigate agent about your accepted policy: %v", err)
		} else if ps != nil {
			st.Global.Loosened = ps.loosened
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	if name, ok := cmdutil.InsideSandbox(); ok {
		// Neither the agent nor the kernel checks are visible from here;
		// what they would say describes the machine, not this sandbox.
		st.InsideSandbox = name
		st.Enforcement = &StatusEnforcement{Source: "sandbox", Unix: "as the sandbox's policy says (not visible from inside)",
			AgentMessage: "not reachable from inside the sandbox",
			Note: fmt.Sprintf("this process is inside the aigate sandbox %s: the policy it was started with applies to everything run here; "+
				"the files above are what a new run outside would use. `aigate status` outside the sandbox shows the agent and backend", name)}
	} else {
		agent, boxes, msg := askAgent(ctx, o.socket)
		st.Enforcement = enforcement(st.Backend, st.Kernel, agent, boxes, msg)
	}
	st.Unenforced = []string{}
	if st.InsideSandbox == "" && st.Enforcement != nil {
		st.Unenforced = append(st.Unenforced, unenforced(l, st.Enforcement.Backend)...)
	}
	if o.json {
		enc := json.NewEncoder(o.f.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(o.f.Out, st, l.Paths)
	return nil
}

// noAgent is what status says when nothing answers on the socket.
const noAgent = "no agent running (aigate run starts one for its lifetime when run with sudo)"

func buildStatus(l *config.Loaded, kernel *doctor.Report) *Status {
	pol, warns := l.Policy()
	st := &Status{
		SchemaVersion: 1,
		Global:        StatusFile{Path: l.Paths.Global, Exists: l.Global != nil},
		Mode:          pol.Mode,
		Backend:       pol.Backend,
		Net:           pol.Net,
		AllowLoopback: pol.Loopback != policy.LoopbackNone,
		Loopback:      pol.Loopback,
		AllowUserns:   StatusSetting{pol.Userns, pol.UsernsSource.File, pol.UsernsSource.Line},
		AllowIOUring:  StatusSetting{pol.IOUring, pol.IOUringSource.File, pol.IOUringSource.Line},
		DenyRead:      rulesOf(pol.DenyRead),
		ExceptRead:    rulesOf(pol.ExceptRead),
		DenyWrite:     rulesOf(pol.DenyWrite),
		DenyExec:      rulesOf(pol.DenyExec),
		AllowUnix:     rulesOf(pol.AllowUnix),
		MaskOutput:    rulesOf(pol.MaskOutput),
		DenyEnv:       rulesOf(pol.Env.Deny),
		AllowEnv:      rulesOf(pol.Env.Allow),
		Writable:      rulesOf(pol.Writable),
		ToolCaches:    toolCaches(pol),
		XDGCacheHome:  xdgCacheHome(pol),
		AllowNet:      []StatusRule{},
		Warnings:      []StatusWarning{},
		ResourceLimits: StatusLimits{
			MaxMemory: pol.Limits.MaxMemory, MaxCPUPercent: pol.Limits.MaxCPUPercent, MaxPIDs: pol.Limits.MaxPIDs,
		},
		Kernel: kernel,
	}
	st.ClaudeState = claudeState(l, pol)
	added, notes := claudeRules(l)
	st.DenyWrite = append(st.DenyWrite, added...)
	st.ClaudeNotProtected = append([]string{}, notes...)
	added, notes = gitRules(l)
	st.DenyWrite = append(st.DenyWrite, added...)
	st.GitNotProtected = append([]string{}, notes...)
	write, read := outsideRules(l)
	st.DenyWrite = append(st.DenyWrite, write...)
	st.DenyRead = append(st.DenyRead, read...)
	read, write, exec, except := envRules(l)
	st.DenyRead = underFollowed(st.DenyRead, read)
	st.DenyWrite = underFollowed(st.DenyWrite, write)
	st.DenyExec = underFollowed(st.DenyExec, exec)
	st.ExceptRead = underFollowed(st.ExceptRead, except)
	_, st.EnvRemoved = pol.Env.Filter(os.Environ())
	if st.EnvRemoved == nil {
		st.EnvRemoved = []string{}
	}
	if l.Project != nil {
		trust := "trusted"
		switch l.Trust {
		case config.Untrusted:
			trust = "untrusted"
		case config.Changed:
			trust = "changed"
		}
		st.Project = &StatusProject{Path: l.Paths.Project, Root: l.Paths.ProjectRoot, Trust: trust}
	}
	for _, ep := range pol.AllowNet {
		st.AllowNet = append(st.AllowNet, StatusRule{Value: ep.Raw, File: ep.Source.File, Line: ep.Source.Line})
	}
	for _, w := range warns {
		st.Warnings = append(st.Warnings, StatusWarning{File: w.Source.File, Line: w.Source.Line, Message: w.Msg})
	}
	return st
}

// underFollowed is rules with each of followed (envRules) placed after
// the rule it follows, so that a reader sees a moved file under the rule
// that protects its default; one whose rule is not in rules goes last.
func underFollowed(rules, followed []StatusRule) []StatusRule {
	out := slices.Clone(rules)
	var rest []StatusRule
	for _, f := range followed {
		i := slices.IndexFunc(out, func(r StatusRule) bool { return r.Value == followedRule(f) && followedRule(r) == "" })
		if i < 0 {
			rest = append(rest, f)
			continue
		}
		// After the rule and the rules already placed under it.
		j := i + 1
		for j < len(out) && followedRule(out[j]) == out[i].Value {
			j++
		}
		out = slices.Insert(out, j, f)
	}
	return append(out, rest...)
}

// enforcement says how a run would be enforced now: by the agent that
// answered, else by what the config's backend choice gives on this kernel.
func enforcement(choice policy.BackendChoice, kernel *doctor.Report, agent *StatusAgent, boxes []StatusSandbox, agentMsg string) *StatusEnforcement {
	e := &StatusEnforcement{Agent: agent, AgentMessage: agentMsg, Sandboxes: boxes}
	if e.Sandboxes == nil {
		e.Sandboxes = []StatusSandbox{}
	}
	verdict := map[string]doctor.Verdict{}
	if kernel != nil {
		for _, v := range kernel.Verdicts {
			verdict[v.Name] = v
		}
	}
	if u := verdict["unix-sockets"]; u.State == doctor.Confined || u.State == doctor.NotConfined {
		e.Unix = u.Detail
	}
	explicit := choice == policy.BackendLSM || choice == policy.BackendFanotify
	if agent != nil {
		e.Backend, e.Source, e.Pinned = agent.Backend, "agent", agent.Pinned
		if agent.Unix != "" {
			e.Unix = agent.Unix
		}
		if explicit && string(choice) != agent.Backend {
			e.Note = fmt.Sprintf("the config asks for the %s backend, but the running agent enforces with %s: aigate run would refuse (use --backend auto, or restart the agent with --backend %s)", choice, agent.Backend, choice)
		}
		return e
	}
	e.Source = "kernel"
	if kernel == nil {
		return e
	}
	backendVerdict := map[string]string{}
	for _, b := range kernel.Backends {
		backendVerdict[b.Name] = b.State
	}
	lsm := verdict["bpf-lsm"]
	switch {
	case explicit:
		state := backendVerdict[string(choice)]
		if state == doctor.NotUsable {
			e.Note = fmt.Sprintf("the config asks for the %s backend, which cannot run here: aigate run would refuse (`aigate doctor` says why)", choice)
			return e
		}
		e.Backend = string(choice)
		if state == doctor.NeedsRoot {
			e.Note = "not proven: the trial load needs root (sudo aigate status)"
		}
	case kernel.Backend == doctor.BackendFanotify && lsm.State == doctor.NotUsable:
		e.Backend = kernel.Backend
		e.Note = "BPF LSM not usable: " + lsm.Detail
	default:
		e.Backend = kernel.Backend
		if backendVerdict[kernel.Backend] == doctor.NeedsRoot {
			e.Note = "not proven: the trial loads need root (sudo aigate status)"
		}
		if e.Backend == "" {
			e.Note = "no backend can run here (`aigate doctor` says why)"
		}
	}
	return e
}

// userName is the login name of uid, or "" when there is none.
func userName(uid uint32) string {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return ""
	}
	return u.Username
}

func rulesOf(rules []policy.PathRule) []StatusRule {
	out := make([]StatusRule, 0, len(rules))
	for _, r := range rules {
		out = append(out, StatusRule{Value: r.Pattern, File: r.Source.File, Line: r.Source.Line})
	}
	return out
}

func printStatus(w io.Writer, st *Status, paths *config.Paths) {
	src := func(file string, line int) string {
		return paths.Pretty(policy.Source{File: file, Line: line}.String())
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()

	fmt.Fprintln(tw, "Config")
	if st.Global.Exists {
		fmt.Fprintf(tw, "  global\t%s\n", paths.Pretty(st.Global.Path))
	} else {
		fmt.Fprintf(tw, "  global\t%s does not exist: built-in defaults apply (`aigate init` writes them out)\n", paths.Pretty(st.Global.Path))
	}
	if len(st.Global.Loosened) > 0 {
		fmt.Fprintf(tw, "  \tchanged since you last accepted it, and allows more: `aigate run` refuses to start until you review it and run `aigate policy accept`:\n")
		for _, l := range st.Global.Loosened {
			fmt.Fprintf(tw, "  \t  %s\n", l)
		}
	}
	if st.Project != nil {
		trust := st.Project.Trust
		if trust != "trusted" {
			trust += ": its loosening entries are ignored until `aigate trust`"
		}
		fmt.Fprintf(tw, "  project\t%s (%s)\n", paths.Pretty(st.Project.Path), trust)
	} else {
		fmt.Fprintf(tw, "  project\tnone (no %s here or above)\n", config.ProjectName)
	}
	fmt.Fprintf(tw, "  mode\t%s\n", st.Mode)
	fmt.Fprintf(tw, "  backend\t%s\n", st.Backend)

	fmt.Fprintln(tw)
	if st.Net == policy.NetAllow {
		fmt.Fprintln(tw, "Network: allow (every destination except cloud metadata)")
	} else {
		fmt.Fprintf(tw, "Network: deny, except %d allowed destination(s)%s\n", len(st.AllowNet),
			map[policy.LoopbackMode]string{policy.LoopbackAll: " and all of loopback",
				policy.LoopbackOwn: " and the sandbox's own loopback servers"}[st.Loopback])
	}
	for _, r := range st.AllowNet {
		fmt.Fprintf(tw, "  %s\t%s\n", r.Value, src(r.File, r.Line))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "Kernel interfaces")
	backend := ""
	if st.Enforcement != nil {
		backend = st.Enforcement.Backend
	}
	for _, s := range []struct {
		key, what string
		set       StatusSetting
		refused   string
	}{
		{"allow_userns", "user namespaces", st.AllowUserns, map[string]string{
			"lsm": "refused (BPF LSM userns_create from Linux 6.1, with events; before it a seccomp filter, without)", "fanotify": "refused (seccomp filter, no events)"}[backend]},
		{"allow_io_uring", "io_uring", st.AllowIOUring, map[string]string{
			"lsm": "allowed: the BPF LSM backend checks io_uring's operations like the system calls", "fanotify": "refused (seccomp filter, no events)"}[backend]},
	} {
		verdict := "allowed"
		if !s.set.Value {
			verdict = s.refused
			if verdict == "" {
				verdict = "refused"
			}
		}
		from := ""
		if s.set.File != "" {
			from = "  (" + src(s.set.File, s.set.Line) + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s: %v\t%s%s\n", s.what, s.key, s.set.Value, verdict, from)
	}
	for _, sec := range []struct {
		title string
		rules []StatusRule
	}{
		{"Deny read", st.DenyRead},
		{"Readable although a name or glob matches (except_read)", st.ExceptRead},
		{"Deny write", st.DenyWrite},
		{"Deny exec", st.DenyExec},
		{"Allowed unix sockets", st.AllowUnix},
		{"Masked in output", st.MaskOutput},
		{"Removed from the environment", st.DenyEnv},
		{"Kept in the environment", st.AllowEnv},
		{"Writable in the home (besides the project and tool state)", st.Writable},
	} {
		if len(sec.rules) == 0 && sec.title != "Deny read" && sec.title != "Deny write" && sec.title != "Deny exec" {
			continue
		}
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "%s (%d)\n", sec.title, len(sec.rules))
		for _, r := range sec.rules {
			indent := "  "
			if followedRule(r) != "" {
				indent = "    " // under the rule it follows
			}
			fmt.Fprintf(tw, "%s%s\t%s\n", indent, r.Value, src(r.File, r.Line))
		}
	}
	if line := st.ClaudeState.line(); line != "" {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, line)
	}
	if len(st.ClaudeNotProtected) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "Run by Claude Code's settings, not protected by aigate run (not a file it follows)")
		for _, n := range st.ClaudeNotProtected {
			fmt.Fprintf(tw, "  %s\n", n)
		}
	}
	if len(st.GitNotProtected) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "Of the project's git directories, not protected by aigate run")
		for _, n := range st.GitNotProtected {
			fmt.Fprintf(tw, "  %s\n", n)
		}
	}
	if len(st.EnvRemoved) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "Your environment: aigate run removes %s\n", strings.Join(st.EnvRemoved, ", "))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "Tool caches (shared_caches)")
	for _, c := range st.ToolCaches {
		if len(c.Own) == 0 {
			fmt.Fprintf(tw, "  %s\tshared with yours (%s): a sandbox can plant code that runs at your next %s outside\t%s\n",
				c.Tool, strings.Join(c.User, ", "), c.Tool, src(c.File, c.Line))
			continue
		}
		fmt.Fprintf(tw, "  %s\tthe sandboxes' own (%s); yours deny_write inside\n", c.Tool, strings.Join(c.Own, ", "))
	}
	if st.XDGCacheHome != "" {
		fmt.Fprintf(tw, "  others\tXDG_CACHE_HOME=%s; the rest of ~/.cache read-only inside\n", st.XDGCacheHome)
	} else {
		fmt.Fprintln(tw, "  others\t~/.cache writable inside (writable:): a sandbox can plant code that tools outside run from it")
	}
	if lim := st.ResourceLimits; lim != (StatusLimits{}) {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "Resource limits (0 = unlimited)")
		fmt.Fprintf(tw, "  max_memory\t%d bytes\n  max_cpu_percent\t%d\n  max_pids\t%d\n", lim.MaxMemory, lim.MaxCPUPercent, lim.MaxPIDs)
	}
	if len(st.Warnings) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "Warnings")
		for _, wr := range st.Warnings {
			fmt.Fprintf(tw, "  ! %s: %s\n", src(wr.File, wr.Line), wr.Message)
		}
	}
	if st.Kernel != nil {
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "Kernel: %s\n", st.Kernel.Summary)
		for _, c := range st.Kernel.Checks {
			// Landlock decides what the sandbox can do to your other
			// processes and your home: said whenever it is short.
			if c.Status == doctor.Fail || (c.Name == "landlock" && c.Status == doctor.Warn) {
				fmt.Fprintf(tw, "  %s\t%s\n", c.Name, firstLine(c.Detail))
			}
		}
	}
	if st.Enforcement != nil {
		tw.Flush()
		printEnforcement(w, st.Enforcement, st.Backend)
	}
	if len(st.Unenforced) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Not enforced")
		for _, s := range st.Unenforced {
			fmt.Fprintf(w, "  ! %s\n", s)
		}
	}
}

func printEnforcement(w io.Writer, e *StatusEnforcement, choice policy.BackendChoice) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "Enforcement")
	if a := e.Agent; a != nil {
		pinned := "not pinned: its sandboxes are ended if it stops"
		if a.Pinned {
			pinned = "pinned: enforcement survives it"
		}
		fmt.Fprintf(tw, "  agent\tpid %d (aigate %s) on %s since %s, %s\n", a.PID, a.Build, a.Socket, a.Started.Local().Format(time.DateTime), pinned)
	} else {
		fmt.Fprintf(tw, "  agent\t%s\n", e.AgentMessage)
	}
	backend := e.Backend
	if backend == "" {
		backend = "none"
	}
	switch e.Source {
	case "sandbox":
		backend = "the one of the sandbox this runs in (not visible from inside)"
	case "agent":
		backend += " (the running agent's)"
	default:
		backend += fmt.Sprintf(" (what aigate run would use now, for backend: %s)", choice)
	}
	fmt.Fprintf(tw, "  backend\t%s\n", backend)
	if e.Note != "" {
		fmt.Fprintf(tw, "  \t%s\n", e.Note)
	}
	unixDesc := e.Unix
	if unixDesc == "" {
		unixDesc = "not checked: the probe needs root (sudo aigate status)"
	}
	fmt.Fprintf(tw, "  unix sockets\t%s\n", unixDesc)
	if e.Agent == nil {
		return
	}
	if e.Agent.Landlock != "" {
		// Landlock refuses home writes, ptrace and signals outside in
		// every sandbox; whether the user sees those refusals depends on
		// the kernel's audit.
		fmt.Fprintf(tw, "  landlock\trefusals %s\n", e.Agent.Landlock)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "Sandboxes (%d)\n", len(e.Sandboxes))
	if len(e.Sandboxes) == 0 {
		return
	}
	fmt.Fprintln(tw, "  NAME\tOWNER\tSTARTED\tBACKEND\tMODE\tDNS\tEVENTS\tCOMMAND")
	for _, b := range e.Sandboxes {
		owner := b.User
		if owner == "" {
			owner = strconv.FormatUint(uint64(b.Owner), 10)
		}
		dns := b.DNS
		if dns == "" {
			dns = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", b.Name, owner, b.Started.Local().Format(time.DateTime),
			b.Backend, b.Mode, dns, b.Events, strings.Join(b.Command, " "))
	}
	for _, b := range e.Sandboxes {
		if b.DNSReason != "" {
			fmt.Fprintf(tw, "  %s: %s: %s\n", b.Name, b.DNS, b.DNSReason)
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// StatusClaudeState is Status.ClaudeState.
type StatusClaudeState struct {
	// Dirs are the state directories whose settings, hooks, plugins,
	// memory and credentials aigate run keeps read-only (~/.claude first).
	// Always an array.
	Dirs []string `json:"dirs"`
	// ConfigDir is $CLAUDE_CONFIG_DIR of status's environment, as set.
	ConfigDir string `json:"config_dir,omitempty"`
	// SecureStorageDir is $CLAUDE_SECURESTORAGE_CONFIG_DIR of status's
	// environment, as set.
	SecureStorageDir string `json:"securestorage_config_dir,omitempty"`
	// Login is the login file (.credentials.json) aigate run keeps
	// read-only beyond Dirs, where $CLAUDE_SECURESTORAGE_CONFIG_DIR moves
	// it ("": none).
	Login string `json:"login,omitempty"`
	// Refused says why aigate run refuses to start with those values
	// ("": it does not).
	Refused string `json:"refused,omitempty"`
}

// line is status's line about the state directories ("" with none).
func (c StatusClaudeState) line() string {
	switch {
	case c.Refused != "":
		return "Claude Code's state: aigate run refuses to start: " + c.Refused
	case len(c.Dirs) == 0:
		return ""
	}
	return "Claude Code's state kept read-only where it runs code outside: " + c.kept()
}

// kept names Dirs, and Login where it is elsewhere.
func (c StatusClaudeState) kept() string {
	s := strings.Join(c.Dirs, ", ")
	if c.Login != "" {
		s += "; its login: " + c.Login
	}
	return s
}
