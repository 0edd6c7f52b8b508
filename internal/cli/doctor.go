package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/doctor"
)

type doctorOptions struct {
	f    *Factory
	json bool
}

func newDoctorCmd(f *Factory) *cobra.Command {
	opts := &doctorOptions{f: f}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that the kernel can enforce aigate's policy, and say how to fix what is missing",
		Long: `Check the kernel version, BTF, whether BPF LSM is active (mounting securityfs
when run as root) and really loads, fanotify, cgroup v2, the BPF filesystem
and privileges. Every failed check prints the exact fix.

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
		return silentExit(ExitError)
	}
	return nil
}

func printDoctor(f *Factory, r *doctor.Report) {
	tw := tabwriter.NewWriter(f.Out, 0, 4, 2, ' ', 0)
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, statusWord(c.Status), c.Detail)
	}
	tw.Flush()
	for _, c := range r.Checks {
		if c.Fix == "" || c.Status == doctor.OK {
			continue
		}
		f.printf("\n%s: how to fix\n", c.Name)
		for _, line := range strings.Split(c.Fix, "\n") {
			f.printf("  %s\n", line)
		}
	}
	f.printf("\n%s\n", r.Summary)
}

func statusWord(s doctor.Status) string {
	if s == doctor.Fail {
		return "FAIL"
	}
	return string(s)
}
