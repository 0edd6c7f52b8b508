package cli

import (
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
)

type trustOptions struct {
	f      *cmdutil.Factory
	revoke bool
	yes    bool
}

func newTrustCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &trustOptions{f: f}
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Let the project's .aigate.yaml loosen your policy",
		Long: `A project's .aigate.yaml may always add deny rules. What loosens the policy
(allow_read, allow_write, allow_exec, allow_net, net: allow, mode: audit,
...) applies only after you trust that exact file content, so that a
repository you clone cannot open the network or your files for itself.

trust shows what the file loosens and the file itself, asks, then records
its path and SHA-256 in root-owned storage no sandbox can write
(/var/lib/aigate/trust; only a process outside every sandbox may change
it): through the aigate agent when one runs; without one, "sudo aigate
trust" records there itself, where "sudo aigate run" decides from (a
user's "aigate trust" without sudo and without an agent says so). Records
in ~/.aigate/trusted.yaml, your own file, count only for a run with
--trust-dir "" (and on macOS). Without a terminal to ask on (a
script), it trusts only with --yes. Any later change to the file
un-trusts it, except your own edits made with "aigate deny/allow --project"
to a trusted file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runTrust(opts) },
	}
	cmd.Flags().BoolVar(&opts.revoke, "revoke", false, "forget the trust for this project file")
	cmd.Flags().BoolVarP(&opts.yes, "yes", "y", false, "trust without asking (for scripts; review the file first)")
	return cmd
}

// errTrustInside is the answer to `aigate trust` from inside a sandbox: the
// tool being confined must not loosen its own next run.
var errTrustInside = errors.New("aigate trust cannot run inside an aigate sandbox: a sandboxed tool " +
	"may not loosen its own policy; run it in a terminal outside `aigate run` after reviewing the file")

func runTrust(o *trustOptions) error {
	f := o.f
	if inSandbox() && !o.revoke {
		return errTrustInside
	}
	paths, err := f.Paths()
	if err != nil {
		return err
	}
	if paths.Project == "" {
		return fmt.Errorf("no %s in %s or its parent directories: nothing to trust", config.ProjectName, paths.WorkDir)
	}
	recs, err := cmdutil.OpenTrust(f, paths, "")
	if err != nil {
		return err
	}
	name := paths.Pretty(paths.Project)
	if o.revoke {
		removed, err := recs.Remove(paths.Project)
		if err != nil {
			return err
		}
		if !removed {
			f.Printf("%s was not trusted\n", name)
			return nil
		}
		f.Printf("%s is no longer trusted; its loosening entries are ignored\n", name)
		return nil
	}

	l, err := config.Load(paths)
	if err != nil {
		return err
	}
	if l.Project == nil {
		return errors.New(name + " disappeared while reading it")
	}
	// What trusting changes is the difference between the policy with and
	// without the file's loosening entries.
	without, _ := policy.Merge(l.Global, l.Project, false)
	with, _ := policy.Merge(l.Global, l.Project, true)
	loosens := loosening(without, with, paths)
	if len(loosens) == 0 {
		f.Printf("%s only adds restrictions.\n", name)
	} else {
		f.Printf("%s loosens your policy:\n", name)
		for _, s := range loosens {
			f.Printf("  %s\n", s)
		}
	}
	// The records decide, not Load's reading of ~/.aigate when the agent
	// keeps them.
	l.Trust = recs.State(paths.Project, l.ProjectData)
	if l.Trust == config.Trusted {
		f.Printf("%s is already trusted (sha256 %s)\n", name, config.Hash(l.ProjectData)[:12])
		return nil
	}
	if err := recs.CheckChange(); err != nil {
		return err
	}
	if len(loosens) > 0 {
		cmdutil.ShowFile(f.Out, name, l.ProjectData)
		if l.Trust == config.Changed {
			f.Printf("%s has changed since you trusted it.\n", name)
		}
		if !o.yes {
			if !f.CanAsk() {
				return fmt.Errorf("not trusting %s: there is no terminal to ask on; review the file above and run `aigate trust --yes`", name)
			}
			if !f.Confirm(fmt.Sprintf("Trust %s as shown? [y/N] ", name)) {
				f.Printf("%s was not trusted\n", name)
				return nil
			}
		}
	}
	if err := recs.Set(paths.Project, l.ProjectData, f.Now()); err != nil {
		return err
	}
	f.Printf("trusted %s (sha256 %s); any change to it will need `aigate trust` again\n", name, config.Hash(l.ProjectData)[:12])
	return nil
}

// loosening lists what with allows that without does not.
func loosening(without, with *policy.Policy, paths *config.Paths) []string {
	var out []string
	src := func(s policy.Source) string { return paths.Pretty(s.String()) }
	if with.Mode != without.Mode {
		out = append(out, fmt.Sprintf("mode: %s  (%s)", with.Mode, src(with.ModeSource)))
	}
	if with.Backend != without.Backend {
		out = append(out, fmt.Sprintf("backend: %s  (%s)", with.Backend, src(with.BackendSource)))
	}
	if with.Net != without.Net {
		out = append(out, fmt.Sprintf("net: %s: every destination becomes reachable  (%s)", with.Net, src(with.NetSource)))
	}
	if with.Loopback != without.Loopback {
		out = append(out, fmt.Sprintf("allow_loopback: %s  (%s)", with.Loopback, src(with.LoopbackSource)))
	}
	if with.Inbound != without.Inbound {
		out = append(out, fmt.Sprintf("allow_inbound: %v: other hosts may connect to the sandbox's servers  (%s)", with.Inbound, src(with.InboundSource)))
	}
	for _, ep := range with.AllowNet {
		if !slices.ContainsFunc(without.AllowNet, func(x policy.Endpoint) bool { return sameEndpoint(x.Raw, ep.Raw) }) {
			out = append(out, fmt.Sprintf("allow_net %s  (%s)", ep.Raw, src(ep.Source)))
		}
	}
	for _, r := range with.AllowUnix {
		if _, ok := denied(without.AllowUnix, r.Pattern); !ok {
			out = append(out, fmt.Sprintf("allow_unix %s  (%s)", r.Pattern, src(r.Source)))
		}
	}
	for _, kind := range []string{"read", "write", "exec"} {
		for _, r := range denyList(without, kind) {
			if _, ok := denied(denyList(with, kind), r.Pattern); !ok {
				out = append(out, fmt.Sprintf("cancels deny_%s %s  (from %s)", kind, r.Pattern, src(r.Source)))
			}
		}
	}
	limits := []struct {
		name      string
		old, new_ uint64
	}{
		{"max_memory", without.Limits.MaxMemory, with.Limits.MaxMemory},
		{"max_cpu_percent", uint64(without.Limits.MaxCPUPercent), uint64(with.Limits.MaxCPUPercent)},
		{"max_pids", uint64(without.Limits.MaxPIDs), uint64(with.Limits.MaxPIDs)},
	}
	for _, lim := range limits {
		if lim.old != lim.new_ {
			out = append(out, fmt.Sprintf("resource_limits.%s: %d -> %d (0 = unlimited)", lim.name, lim.old, lim.new_))
		}
	}
	for _, r := range with.Env.Allow {
		if !slices.ContainsFunc(without.Env.Allow, func(x policy.PathRule) bool { return x.Pattern == r.Pattern }) {
			out = append(out, fmt.Sprintf("allow_env %s: the tool gets that variable  (%s)", r.Pattern, src(r.Source)))
		}
	}
	if with.DNS != without.DNS {
		out = append(out, fmt.Sprintf("dns: min_ttl %v, max_ttl %v", with.DNS.MinTTL, with.DNS.MaxTTL))
	}
	return out
}
