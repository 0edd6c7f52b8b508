package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/policy"
)

type allowOptions struct {
	f       *cmdutil.Factory
	kind    string // read, write, exec or net
	args    []string
	all     bool
	project bool
	dryRun  bool
}

func newAllowCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &allowOptions{f: f}
	cmd := &cobra.Command{
		Use:   "allow (read|write|exec|net) ...",
		Short: "Undo a deny rule, or allow a network destination",
		Long: `The inverse of deny.

  aigate allow read "*.pem"           remove "*.pem" from deny_read
  aigate allow exec ssh
  aigate allow net registry.example.com "*.example.org" 10.0.0.0/8:5432
  aigate allow net --all              net: allow (everything but cloud metadata)

Without --project the global config is edited: the rule is removed from its
deny list. With --project the project's .aigate.yaml is edited: a rule it
denies itself is removed; a rule the global config denies is cancelled with
an allow_read/allow_write/allow_exec entry. Entries that loosen the policy
in a project file apply only once the file is trusted: when you edit a file
you had trusted, your edit stays trusted; otherwise run "aigate trust".`,
	}
	addRuleCommands(cmd, "allow", &opts.project, &opts.dryRun, "Stop denying patterns in deny_%s", func(kind string, args []string) error {
		opts.kind, opts.args = kind, args
		return runAllow(opts)
	})
	netCmd := &cobra.Command{
		Use:   "net (DOMAIN...|--all)",
		Short: "Add destinations to allow_net, or set net: allow with --all",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !opts.all {
				return cmdutil.UsageErrorf("allow net: name a domain, IP or CIDR, or use --all")
			}
			opts.kind, opts.args = "net", args
			return runAllow(opts)
		},
	}
	netCmd.Flags().BoolVar(&opts.all, "all", false, "set net: allow (every destination except cloud metadata)")
	cmd.AddCommand(netCmd)
	return cmd
}

func runAllow(o *allowOptions) error {
	if inSandbox() {
		return fmt.Errorf("aigate allow cannot run inside an aigate sandbox: a sandboxed tool may not loosen its own policy; run it in a terminal outside `aigate run`")
	}
	if o.kind == "net" {
		return runAllowNet(o)
	}
	if err := checkPatterns(o.args); err != nil {
		return err
	}
	l, err := o.f.Load()
	if err != nil {
		return err
	}
	e, err := beginEdit(o.f, o.project, o.dryRun)
	if err != nil {
		return err
	}
	key, allowKey := "deny_"+o.kind, "allow_"+o.kind
	// The rules of the layer below the edited file: the global file (or the
	// defaults) under a project file.
	below, _ := policy.Merge(l.Global, nil, false)
	var report, notes []string
	loosened := false
	for _, p := range o.args {
		removed, err := e.doc.RemoveFromList(key, p, samePattern)
		if err != nil {
			return err
		}
		if removed {
			report = append(report, fmt.Sprintf("%s -= %s", key, p))
		}
		if !o.project {
			if r, ok := denied(configList(l.Project, key), p); ok {
				notes = append(notes, fmt.Sprintf("%s is still denied by %s; use --project to change that", p, l.Paths.Pretty(r.Source.String())))
			} else if !removed {
				report = append(report, fmt.Sprintf("%s has no %s: nothing to allow", key, p))
			}
			continue
		}
		if r, ok := denied(denyList(below, o.kind), p); ok {
			added, err := e.doc.AddToList(allowKey, r.Pattern, samePattern)
			if err != nil {
				return err
			}
			if added {
				loosened = true
				report = append(report, fmt.Sprintf("%s += %s (cancels %s)", allowKey, r.Pattern, l.Paths.Pretty(r.Source.String())))
			} else {
				report = append(report, fmt.Sprintf("%s already has %s", allowKey, r.Pattern))
			}
		} else if !removed {
			report = append(report, fmt.Sprintf("%s is not denied: nothing to allow", p))
		}
	}
	if _, err := e.commit(); err != nil {
		return err
	}
	printReport(o.f, e, report)
	for _, n := range notes {
		o.f.Warnf("%s", n)
	}
	if loosened && e.needsTrust() {
		o.f.Warnf("%s is not trusted: its allow entries apply only after you review it and run `aigate trust`", e.name())
	}
	return nil
}

func runAllowNet(o *allowOptions) error {
	if err := checkEndpoints(o.args); err != nil {
		return err
	}
	e, err := beginEdit(o.f, o.project, o.dryRun)
	if err != nil {
		return err
	}
	var report []string
	if o.all {
		if changed, err := e.doc.SetScalar("net", string(policy.NetAllow)); err != nil {
			return err
		} else if changed {
			report = append(report, "net: allow")
		}
	}
	for _, d := range o.args {
		added, err := e.doc.AddToList("allow_net", d, sameEndpoint)
		if err != nil {
			return err
		}
		if added {
			report = append(report, "allow_net += "+d)
		} else {
			report = append(report, "allow_net already has "+d)
		}
	}
	cfg, err := e.commit()
	if err != nil {
		return err
	}
	printReport(o.f, e, report)
	if e.needsTrust() {
		o.f.Warnf("%s is not trusted: what it allows applies only after you review it and run `aigate trust`", e.name())
	}
	if !o.all && cfg != nil && cfg.Net != nil && *cfg.Net == policy.NetAllow {
		o.f.Warnf("%s has net: allow, so every destination is reachable already; allow_net matters with net: deny", e.name())
	}
	return nil
}
