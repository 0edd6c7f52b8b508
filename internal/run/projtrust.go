//go:build linux

package run

import (
	"fmt"
	"strings"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
)

// settleTrust decides the project file's trust as the agent that creates
// the sandbox will: from root's records, never from ~/.aigate/trusted.yaml
// alone, which is the user's file and so a sandbox's to forge once
// something gets a write past the backend.
//
//   - An agent that keeps records answers (the service agent, or another
//     run's embedded one): its records decide; a project trusted only in
//     ~/.aigate/trusted.yaml is named with a warning (cmdutil.ApplyTrust).
//   - None answers and run is root (it will embed an agent, which decides
//     from root's records in opts.TrustDir): a project file that loosens
//     the policy and is not trusted there is asked about on a terminal
//     before anything starts (the keyboard is the user's, and run is
//     outside every sandbox), and refused in a script, naming `sudo aigate
//     trust`, as a loosened global policy is (acceptLoosened).
//   - `--trust-dir ""`: no records; ~/.aigate/trusted.yaml decides, and
//     run says so when it trusts the project by it.
func settleTrust(f *cmdutil.Factory, opts *runOptions, loaded *config.Loaded) error {
	if loaded.Project == nil {
		return nil
	}
	recs, err := cmdutil.OpenTrustIn(f, loaded.Paths, opts.Socket, opts.TrustDir)
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: fmt.Errorf("refusing to run %s: %w", opts.Args[0], err)}
	}
	local := loaded.Trust
	switch {
	case !recs.Held():
		if local == config.Trusted && opts.TrustDir == "" {
			f.Warnf("%s is trusted by %s alone: with --trust-dir \"\" no root-owned records are kept, and that file is yours, "+
				"which a sandboxed tool that got a write past the backend could have forged (docs/threat-model.md)",
				loaded.Paths.Pretty(loaded.Paths.Project), loaded.Paths.Pretty(loaded.Paths.Trust))
		}
		return nil
	case !recs.Direct():
		cmdutil.ApplyTrust(f, loaded, recs)
		return nil
	}
	loaded.Trust = recs.State(loaded.Paths.Project, loaded.ProjectData)
	if loaded.Trust == config.Trusted || f.Env.Euid != 0 {
		// Not root and no agent: no sandbox can be made (createSandbox
		// says so, exit 3); nothing to ask.
		return nil
	}
	loosens := projectLoosens(loaded)
	if len(loosens) == 0 {
		return nil // it only adds restrictions: they apply untrusted
	}
	return askTrust(f, opts, loaded, recs, local, loosens)
}

// projectLoosens lists what the project file's loosening entries would
// allow beyond the policy without them.
func projectLoosens(loaded *config.Loaded) []string {
	without, _ := policy.Merge(loaded.Global, loaded.Project, false)
	with, _ := policy.Merge(loaded.Global, loaded.Project, true)
	return policy.Loosened(policy.Summarize(without), policy.Summarize(with))
}

// askTrust asks, on a terminal, whether to trust the project file that
// root's records do not trust; yes records it there (run is root and
// outside every sandbox, which Set checks again) and the run applies it,
// no runs with its loosening entries ignored, as an untrusted file always
// is. Without a terminal nobody decides: the run is refused (exit 4),
// naming the command that trusts from outside.
func askTrust(f *cmdutil.Factory, opts *runOptions, loaded *config.Loaded, recs *cmdutil.TrustRecords, local config.TrustState, loosens []string) error {
	name := loaded.Paths.Pretty(loaded.Paths.Project)
	var b strings.Builder
	fmt.Fprintf(&b, "%s loosens your policy and is not trusted in %s, which `sudo aigate run` applies", name, recs.Where())
	if loaded.Trust == config.Changed {
		b.WriteString(" (it changed since you trusted it)")
	}
	fmt.Fprintf(&b, ":\n  %s", strings.Join(loosens, "\n  "))
	if local == config.Trusted {
		fmt.Fprintf(&b, "\n%s trusts it, but that file is yours and a sandboxed tool may have written it: "+
			"without an agent, a record there counts only once it is confirmed from outside a sandbox into root's records",
			loaded.Paths.Pretty(loaded.Paths.Trust))
	}
	if !f.CanAsk() {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: fmt.Errorf("refusing to run %s: %s\n"+
			"Review %s and run `sudo aigate trust` in a terminal outside any sandbox (or remove its loosening entries); nothing was started",
			opts.Args[0], b.String(), name)}
	}
	f.Warnf("%s", b.String())
	cmdutil.ShowFile(f.Err, name, loaded.ProjectData)
	if !f.Confirm(fmt.Sprintf("Trust %s as shown and run? [y/N] ", name)) {
		f.Warnf("%s is not trusted: its loosening entries are ignored in this run (`sudo aigate trust` trusts it)", name)
		return nil
	}
	if err := recs.Set(loaded.Paths.Project, loaded.ProjectData, f.Now()); err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: fmt.Errorf("refusing to run %s: trust %s: %w", opts.Args[0], name, err)}
	}
	loaded.Trust = config.Trusted
	return nil
}
