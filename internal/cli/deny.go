package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/policy"
)

type denyOptions struct {
	f       *cmdutil.Factory
	kind    string // read, write, exec or net
	args    []string
	except  []string
	project bool
	dryRun  bool
}

func newDenyCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &denyOptions{f: f}
	cmd := &cobra.Command{
		Use:   "deny (read|write|exec|net) ...",
		Short: "Deny agents a file, a program or the network",
		Long: `Add deny rules to your global config (~/.aigate/config.yaml), or with
--project to the project's .aigate.yaml. The file keeps its comments and
layout; a missing global file is first created from the defaults.

  aigate deny read .env.local "*.sqlite" ~/.config/op/
  aigate deny write Makefile
  aigate deny exec docker
  aigate deny net --except api.anthropic.com --except github.com
                                      (net: deny, and allow_net becomes
                                      exactly these two: the rest is removed)
  aigate deny net pypi.org            (remove it from allow_net)
  aigate allow net pypi.org           (add to allow_net, keeping the rest)

Patterns: a name (.env), a name glob with one * at the start or end (*.pem,
id_rsa*), a path relative to the project root (config/prod.yaml), a path in
your home (~/.ssh/) or an absolute path. A trailing / means a directory and
everything in it. Quote globs so that the shell leaves them alone.`,
	}
	addRuleCommands(cmd, "deny", &opts.project, &opts.dryRun, "Add patterns to deny_%s", func(kind string, args []string) error {
		opts.kind, opts.args = kind, args
		return runDeny(opts)
	})
	netCmd := &cobra.Command{
		Use:   "net [DOMAIN...]",
		Short: "Set net: deny; --except X allows only X (allow_net replaced), arguments remove them from allow_net",
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.kind, opts.args = "net", args
			return runDeny(opts)
		},
	}
	netCmd.Flags().StringSliceVar(&opts.except, "except", nil, "domain, IP or CIDR (optionally :port) to allow; allow_net becomes exactly these (repeatable; `aigate allow net` adds instead)")
	cmd.AddCommand(netCmd)
	return cmd
}

func runDeny(o *denyOptions) error {
	if o.kind == "net" {
		return runDenyNet(o)
	}
	if err := checkPatterns(o.args); err != nil {
		return err
	}
	e, err := beginEdit(o.f, o.project, o.dryRun)
	if err != nil {
		return err
	}
	key, allowKey := "deny_"+o.kind, "allow_"+o.kind
	var report []string
	for _, p := range o.args {
		// An allow entry in the same file would cancel the new rule: the
		// user wants it denied now, so it goes.
		if un, err := e.doc.RemoveFromList(allowKey, p, samePattern); err != nil {
			return err
		} else if un {
			report = append(report, fmt.Sprintf("%s -= %s", allowKey, p))
		}
		added, err := e.doc.AddToList(key, p, samePattern)
		if err != nil {
			return err
		}
		if added {
			report = append(report, fmt.Sprintf("%s += %s", key, p))
		} else {
			report = append(report, fmt.Sprintf("%s already has %s", key, p))
		}
	}
	cfg, err := e.commit()
	if err != nil {
		return err
	}
	for _, p := range o.args {
		if _, ok := denied(configList(cfg, key), p); !ok {
			return fmt.Errorf("%s: %s was not added to %s; please report this", e.name(), p, key)
		}
	}
	printReport(o.f, e, report)
	return nil
}

func runDenyNet(o *denyOptions) error {
	if err := checkEndpoints(append(append([]string(nil), o.except...), o.args...)); err != nil {
		return err
	}
	e, err := beginEdit(o.f, o.project, o.dryRun)
	if err != nil {
		return err
	}
	var report []string
	if changed, err := e.doc.SetScalar("net", string(policy.NetDeny)); err != nil {
		return err
	} else if changed {
		report = append(report, "net: deny")
	}
	// --except X means "only X": what the file allowed besides goes.
	if len(o.except) > 0 {
		have, err := e.doc.List("allow_net")
		if err != nil {
			return err
		}
		var removed []string
		for _, d := range have {
			if slices.ContainsFunc(o.except, func(x string) bool { return sameEndpoint(d, x) }) {
				continue
			}
			if _, err := e.doc.RemoveFromList("allow_net", d, sameEndpoint); err != nil {
				return err
			}
			removed = append(removed, d)
		}
		if len(removed) > 0 {
			report = append(report, "allow_net -= "+strings.Join(removed, ", ")+" (not in --except)")
		}
	}
	for _, d := range o.except {
		added, err := e.doc.AddToList("allow_net", d, sameEndpoint)
		if err != nil {
			return err
		}
		if added {
			report = append(report, "allow_net += "+d)
		}
	}
	for _, d := range o.args {
		removed, err := e.doc.RemoveFromList("allow_net", d, sameEndpoint)
		if err != nil {
			return err
		}
		if removed {
			report = append(report, "allow_net -= "+d)
		} else {
			report = append(report, "allow_net has no "+d)
		}
	}
	cfg, err := e.commit()
	if err != nil {
		return err
	}
	if cfg == nil || cfg.Net == nil || *cfg.Net != policy.NetDeny {
		return fmt.Errorf("%s: net was not set to deny; please report this", e.name())
	}
	printReport(o.f, e, report)
	if len(o.except) > 0 && e.needsTrust() {
		o.f.Warnf("%s is not trusted: its allow_net entries apply only after you review it and run `aigate trust`", e.name())
	}
	if e.project && len(o.except) > 0 {
		// A project file adds to the global list; it cannot narrow it.
		if l, err := o.f.Load(); err == nil {
			g, _ := policy.Merge(l.Global, nil, false)
			var extra []string
			for _, ep := range g.AllowNet {
				if !slices.ContainsFunc(o.except, func(x string) bool { return sameEndpoint(ep.Raw, x) }) {
					extra = append(extra, ep.Raw)
				}
			}
			if len(extra) > 0 {
				o.f.Warnf("the global config still allows %s; run `aigate deny net --except ...` without --project to narrow it there", strings.Join(extra, ", "))
			}
		}
	}
	if e.project && len(o.args) > 0 {
		// A project file can add to allow_net but not take away from the
		// global file's list.
		if l, err := o.f.Load(); err == nil {
			g, _ := policy.Merge(l.Global, nil, false)
			for _, d := range o.args {
				for _, ep := range g.AllowNet {
					if sameEndpoint(ep.Raw, d) {
						o.f.Warnf("%s is still allowed by %s; run `aigate deny net %s` without --project to remove it there",
							d, l.Paths.Pretty(ep.Source.String()), d)
					}
				}
			}
		}
	}
	return nil
}

// printReport lists what an edit did, one change a line; with --dry-run
// each line says that it was not written.
func printReport(f *cmdutil.Factory, e *edit, report []string) {
	name := e.name()
	if e.dryRun {
		name += " (dry run, not written)"
	}
	for _, r := range report {
		f.Printf("%s: %s\n", name, r)
	}
}
