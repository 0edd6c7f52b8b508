package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/doctor"
	"github.com/aigate-dev/aigate/internal/policy"
)

type statusOptions struct {
	f    *Factory
	json bool
}

func newStatusCmd(f *Factory) *cobra.Command {
	opts := &statusOptions{f: f}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the effective policy, where each rule comes from, and kernel readiness",
		Long: `Show the policy that "aigate run" would apply here: the global config merged
with the project's .aigate.yaml (whose loosening entries count only when it
is trusted), every rule with the file and line it comes from, warnings, and
a summary of "aigate doctor".

--json prints the same as one JSON object (schema in docs/cli.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runStatus(opts) },
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print JSON")
	return cmd
}

// Status is the --json output. Its field names are a stable interface:
// add fields, never rename or remove them.
type Status struct {
	SchemaVersion  int                  `json:"schema_version"`
	Global         StatusFile           `json:"global"`
	Project        *StatusProject       `json:"project"`
	Mode           policy.Mode          `json:"mode"`
	Backend        policy.BackendChoice `json:"backend"`
	Net            policy.NetMode       `json:"net"`
	AllowLoopback  bool                 `json:"allow_loopback"`
	DenyRead       []StatusRule         `json:"deny_read"`
	DenyWrite      []StatusRule         `json:"deny_write"`
	DenyExec       []StatusRule         `json:"deny_exec"`
	AllowNet       []StatusRule         `json:"allow_net"`
	AllowUnix      []StatusRule         `json:"allow_unix"`
	MaskOutput     []StatusRule         `json:"mask_output"`
	ResourceLimits StatusLimits         `json:"resource_limits"`
	Warnings       []StatusWarning      `json:"warnings"`
	Kernel         *doctor.Report       `json:"kernel"`
}

// StatusFile is one config file.
type StatusFile struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
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

func runStatus(o *statusOptions) error {
	l, err := o.f.Load()
	if err != nil {
		return err
	}
	st := buildStatus(l, o.f.Doctor(false))
	if o.json {
		enc := json.NewEncoder(o.f.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(o.f.Out, st, l.Paths)
	return nil
}

func buildStatus(l *config.Loaded, kernel *doctor.Report) *Status {
	pol, warns := l.Policy()
	st := &Status{
		SchemaVersion: 1,
		Global:        StatusFile{Path: l.Paths.Global, Exists: l.Global != nil},
		Mode:          pol.Mode,
		Backend:       pol.Backend,
		Net:           pol.Net,
		AllowLoopback: pol.Loopback,
		DenyRead:      rulesOf(pol.DenyRead),
		DenyWrite:     rulesOf(pol.DenyWrite),
		DenyExec:      rulesOf(pol.DenyExec),
		AllowUnix:     rulesOf(pol.AllowUnix),
		MaskOutput:    rulesOf(pol.MaskOutput),
		AllowNet:      []StatusRule{},
		Warnings:      []StatusWarning{},
		ResourceLimits: StatusLimits{
			MaxMemory: pol.Limits.MaxMemory, MaxCPUPercent: pol.Limits.MaxCPUPercent, MaxPIDs: pol.Limits.MaxPIDs,
		},
		Kernel: kernel,
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
			map[bool]string{true: " and loopback", false: ""}[st.AllowLoopback])
	}
	for _, r := range st.AllowNet {
		fmt.Fprintf(tw, "  %s\t%s\n", r.Value, src(r.File, r.Line))
	}
	for _, sec := range []struct {
		title string
		rules []StatusRule
	}{
		{"Deny read", st.DenyRead},
		{"Deny write", st.DenyWrite},
		{"Deny exec", st.DenyExec},
		{"Allowed unix sockets", st.AllowUnix},
		{"Masked in output", st.MaskOutput},
	} {
		if len(sec.rules) == 0 && (sec.title == "Allowed unix sockets" || sec.title == "Masked in output") {
			continue
		}
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "%s (%d)\n", sec.title, len(sec.rules))
		for _, r := range sec.rules {
			fmt.Fprintf(tw, "  %s\t%s\n", r.Value, src(r.File, r.Line))
		}
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
			if c.Status == doctor.Fail {
				fmt.Fprintf(tw, "  %s\t%s\n", c.Name, firstLine(c.Detail))
			}
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
