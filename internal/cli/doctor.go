package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/doctor"
)

type doctorOptions struct {
	f    *cmdutil.Factory
	json bool
}

func newDoctorCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &doctorOptions{f: f}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that the kernel can enforce aigate's policy, and say how to fix what is missing",
		Long: `Check the kernel version, BTF, whether BPF LSM is active (mounting securityfs
when run as root), cgroup v2, the BPF filesystem and privileges, and, as
root, prove each part of enforcement with a real trial: a BPF LSM program
loaded and run, a fanotify permission event answered, a cgroup/connect4
program attached to a test cgroup, the unix-socket hooks. Then it says, per
part, "usable" or why not and how to fix it, and which backend
"backend: auto" would pick now.

Without root the trials cannot run: doctor says which checks need root
instead of failing them. Every failed check prints the exact fix.

Exit status 0 when some enforcement backend can run, 1 when none can.
Run it with sudo for the complete picture.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runDoctor(opts) },
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print JSON")
	return cmd
}

func runDoctor(o *doctorOptions) error {
	r := o.f.Doctor(true)
	if c, ok := claudeStateCheck(o.f); ok {
		r.Checks = append(r.Checks, c)
	}
	if o.json {
		enc := json.NewEncoder(o.f.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printDoctor(o.f, r)
	}
	if !r.Ready {
		return cmdutil.SilentExit(cmdutil.ExitError)
	}
	return nil
}

func printDoctor(f *cmdutil.Factory, r *doctor.Report) {
	tw := tabwriter.NewWriter(f.Out, 0, 4, 2, ' ', 0)
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, statusWord(c.Status), c.Detail)
	}
	tw.Flush()
	if len(r.Verdicts) > 0 {
		f.Printf("\nEnforcement on this machine\n")
		for _, v := range r.Verdicts {
			f.Printf("  %s\n", verdictLine(v))
		}
		printBackends(f, r)
	}
	for _, c := range r.Checks {
		if c.Fix == "" || c.Status == doctor.OK || c.Fix == sudoDoctorFix {
			continue
		}
		f.Printf("\n%s: how to fix\n", c.Name)
		for _, line := range strings.Split(c.Fix, "\n") {
			f.Printf("  %s\n", line)
		}
	}
	if len(r.NeedRoot) > 0 {
		f.Printf("\nNot checked without root: %s; run `sudo aigate doctor` for them.\n", strings.Join(r.NeedRoot, ", "))
	}
	f.Printf("\n%s\n", r.Summary)
}

// sudoDoctorFix is the Fix of a check skipped for lack of root; it is said
// once, in the "not checked" line.
const sudoDoctorFix = "sudo aigate doctor"

// verdictLine is "BPF LSM: usable", or why not and the fix.
func verdictLine(v doctor.Verdict) string {
	switch v.State {
	case doctor.Usable:
		return v.Title + ": usable"
	case doctor.Confined, doctor.NotConfined:
		return v.Title + ": " + v.Detail
	case doctor.NeedsRoot:
		return v.Title + ": not checked: needs root (sudo aigate doctor)"
	case doctor.NotUsable:
		line := v.Title + ": not usable: " + v.Detail
		if v.Fix != "" {
			fix := firstLine(v.Fix)
			if strings.Contains(v.Fix, "\n") {
				fix += " (the whole fix is below)"
			}
			line += " — fix: " + fix
		}
		return line
	}
	return v.Title + ": " + v.State + ": " + v.Detail
}

// printBackends says which backend auto picks and what each enforces.
func printBackends(f *cmdutil.Factory, r *doctor.Report) {
	if r.Agent != nil {
		f.Printf("\nbackend now: %s\n", autoPick(r))
	} else {
		f.Printf("\nbackend auto would pick now: %s\n", autoPick(r))
	}
	tw := tabwriter.NewWriter(f.Out, 0, 4, 2, ' ', 0)
	for _, b := range r.Backends {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", b.Name, b.State, b.Enforces)
	}
	tw.Flush()
	f.Printf("  what each enforces, and what not: %s\n", doctor.ReadmeTable)
}

// autoPick names the backend auto would pick, and says so when that is not
// proven yet (the trial loads need root).
func autoPick(r *doctor.Report) string {
	if a := r.Agent; a != nil {
		return fmt.Sprintf("%s (what the running agent, pid %d, enforces with)", a.Backend, a.PID)
	}
	if r.Backend == "" {
		return "none (no backend can run here)"
	}
	for i, b := range r.Backends {
		if b.Name != r.Backend || b.State != doctor.NeedsRoot {
			continue
		}
		s := r.Backend + ", if its trial load works (not checked without root)"
		if i+1 < len(r.Backends) {
			s += ", else " + r.Backends[i+1].Name
		}
		return s
	}
	return r.Backend
}

func statusWord(s doctor.Status) string {
	if s == doctor.Fail {
		return "FAIL"
	}
	return string(s)
}

// claudeStateCheck is doctor's line on the Claude Code state directories
// aigate run protects (claudeState): a warning when $CLAUDE_CONFIG_DIR
// or $CLAUDE_SECURESTORAGE_CONFIG_DIR names one it refuses. None without a readable policy, or off Linux.
func claudeStateCheck(f *cmdutil.Factory) (doctor.Check, bool) {
	l, err := f.Load()
	if err != nil {
		return doctor.Check{}, false
	}
	pol, _ := l.Policy()
	st := claudeState(l, pol)
	c := doctor.Check{Name: "claude-state"}
	switch {
	case st.Refused != "":
		c.Status, c.Detail, c.Fix = doctor.Warn, "$"+claudestate.ConfigDirEnv+" or $"+claudestate.SecureStorageEnv+": aigate run refuses to start", st.Refused
	case len(st.Dirs) == 0:
		return c, false
	default:
		c.Status, c.Detail = doctor.OK, "kept read-only where it runs code outside: "+st.kept()
	}
	return c, true
}
