package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
)

type policyOptions struct {
	f   *cmdutil.Factory
	yes bool
	dir string // the records when no agent runs ("" for the default)
}

func newPolicyCmd(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Accept your hand-edited global config as your policy",
		Long: `The aigate agent keeps the global policy you last accepted, where no sandbox
can write, and refuses to start a sandbox when ~/.aigate/config.yaml allows
more than that policy: a sandboxed tool must not loosen its own next run by
writing your config. "aigate deny", "aigate allow", "aigate init" and
"aigate reset" accept their own changes; an edit made by hand is accepted
with "aigate policy accept".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	opts := &policyOptions{f: f}
	accept := &cobra.Command{
		Use:   "accept",
		Short: "Accept ~/.aigate/config.yaml as it is now",
		Long: `Show what ~/.aigate/config.yaml allows beyond the policy you last accepted,
ask, then record it with the aigate agent as your accepted policy, so that
"aigate run" starts with it. Only a process outside every sandbox may do
this. Without a terminal to ask on (a script), it accepts only with --yes.
Without a running agent, "sudo aigate policy accept" records it where the
agent that "sudo aigate run" starts inside itself compares with (root's
/var/lib/aigate/trust, as the service agent's).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runPolicyAccept(opts) },
	}
	accept.Flags().BoolVarP(&opts.yes, "yes", "y", false, "accept without asking (for scripts; review the file first)")
	accept.Flags().StringVar(&opts.dir, "trust-dir", "", "with no agent running, the root-owned `DIR` of the records (default /var/lib/aigate/trust, as `aigate run --trust-dir`)")
	cmd.AddCommand(accept)
	return cmd
}

// errAcceptInside is the answer to `aigate policy accept` from inside a
// sandbox (the agent refuses it too).
var errAcceptInside = errors.New("aigate policy accept cannot run inside an aigate sandbox: a sandboxed tool " +
	"may not loosen its own policy; run it in a terminal outside `aigate run` after reviewing the file")

func runPolicyAccept(o *policyOptions) error {
	f := o.f
	if inSandbox() {
		return errAcceptInside
	}
	paths, err := f.Paths()
	if err != nil {
		return err
	}
	name := paths.Pretty(paths.Global)
	data, err := config.AsUser(paths.User, func() ([]byte, error) {
		data, err := os.ReadFile(paths.Global)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if data == nil && err == nil {
			data = []byte{}
		}
		return data, err
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if data != nil {
		if _, err := policy.Parse(paths.Global, data); err != nil {
			return fmt.Errorf("%w\nfix %s first; nothing was accepted", err, name)
		}
	}
	global := policyFile{path: paths.Global, data: data}
	st, err := askAgentPolicy(f, paths, "", policyAsk{action: "check", global: global, dir: o.dir})
	if err != nil {
		return fmt.Errorf("ask the aigate agent: %w", err)
	}
	if st == nil {
		if f.Env.Euid != 0 {
			return errors.New("no aigate agent answers, and the policy that `sudo aigate run` compares with is root's: run `sudo aigate policy accept`")
		}
		f.Printf("no aigate agent that keeps policy records answers: nothing is compared, nothing to accept\n")
		return nil
	}
	if data == nil {
		name += " (missing: the built-in defaults)"
	}
	if len(st.loosened) == 0 {
		f.Printf("%s allows nothing beyond the policy you last accepted\n", name)
	} else {
		f.Printf("%s allows more than the policy you accepted on %s:\n", name, st.accepted.Local().Format("2006-01-02 15:04"))
		for _, s := range st.loosened {
			f.Printf("  %s\n", s)
		}
		if !o.yes {
			if !f.CanAsk() {
				return fmt.Errorf("not accepting %s: there is no terminal to ask on; review the file and run `aigate policy accept --yes`", name)
			}
			if !f.Confirm(fmt.Sprintf("Accept %s as your policy? [y/N] ", name)) {
				f.Printf("not accepted; `aigate run` refuses to start until you accept or undo the change\n")
				return nil
			}
		}
	}
	if _, err := askAgentPolicy(f, paths, "", policyAsk{action: "accept", global: global, dir: o.dir}); err != nil {
		return fmt.Errorf("accept with the aigate agent: %w", err)
	}
	f.Printf("accepted %s as your policy\n", name)
	return nil
}
