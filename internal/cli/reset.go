package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

type resetOptions struct {
	f     *cmdutil.Factory
	force bool
}

func newResetCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &resetOptions{f: f}
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Remove your global config and trust store",
		Long: `Remove the global config file and the trust store (~/.aigate/trusted.yaml),
and ~/.aigate itself when nothing else is left in it, and what "aigate
setup" installed for the agent (its unit, socket directory, BPF pins and
group, and favordynmods on the cgroup v2 mount if setup set it) with the
sandbox cgroups whose owner has died; it refuses while an
agent that systemd does not run is still running. Run as a normal user, it
removes only your own files and names the agent's parts that need root.
Project files are left alone. Without --force, list what would be removed
and exit with 2.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runReset(opts) },
	}
	cmd.Flags().BoolVar(&opts.force, "force", false, "really remove the files")
	return cmd
}

func runReset(o *resetOptions) error {
	f := o.f
	paths, err := f.Paths()
	if err != nil {
		return err
	}
	// Under sudo, look and remove with the user's file-system identity: a
	// --config of /etc/passwd, or ~/.aigate a symlink to /etc, must not
	// make root remove what the user could not.
	var victims []string
	if err := paths.User.Do(func() error {
		for _, p := range []string{paths.Global, paths.Trust} {
			if _, err := os.Lstat(p); err == nil {
				victims = append(victims, p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("reset: %w", err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	// What `aigate setup` installed is root's: a user's reset removes the
	// user's own files and names the rest.
	var agent, rootOnly []string
	if f.AgentResetPlan != nil {
		agent = f.AgentResetPlan()
	}
	if f.Env.Euid != 0 {
		agent, rootOnly = nil, agent
	}
	leftForRoot := func() {
		if len(rootOnly) == 0 {
			return
		}
		f.Printf("Left alone, because removing them needs root (sudo aigate reset --force):\n")
		for _, a := range rootOnly {
			f.Printf("  %s (aigate agent)\n", a)
		}
	}
	if len(victims) == 0 && len(agent) == 0 {
		f.Printf("nothing to remove: neither %s nor %s exists\n", paths.Pretty(paths.Global), paths.Pretty(paths.Trust))
		leftForRoot()
		return nil
	}
	if !o.force {
		f.Printf("aigate reset --force would remove:\n")
		for _, v := range victims {
			f.Printf("  %s\n", paths.Pretty(v))
		}
		for _, a := range agent {
			f.Printf("  %s (aigate agent)\n", a)
		}
		if len(victims) > 0 {
			f.Printf("The built-in defaults would apply, and every project file would be untrusted.\n")
		}
		leftForRoot()
		return cmdutil.SilentExit(cmdutil.ExitUsage)
	}
	if len(agent) > 0 && f.AgentReset != nil {
		if err := f.AgentReset(f); err != nil {
			return fmt.Errorf("reset the agent: %w", err)
		}
	}
	err = paths.User.Do(func() error {
		for _, v := range victims {
			f.Printf("removing %s\n", paths.Pretty(v))
			if err := os.Remove(v); err != nil {
				return fmt.Errorf("reset: %w", err)
			}
		}
		// Only an empty directory goes; anything else in it is not ours to remove.
		if err := os.Remove(paths.Dir); err == nil {
			f.Printf("removing %s\n", paths.Pretty(paths.Dir))
		}
		return nil
	})
	if err == nil && slices.Contains(victims, paths.Global) && len(agent) == 0 {
		// The built-in defaults apply now, and are the accepted policy.
		// Not after root's reset of the agent's state: the records went
		// with it (the next run takes the defaults as a first use), and
		// accepting would make them again.
		acceptEdit(f, paths, policyFile{}, policyFile{path: paths.Global}, false)
	}
	if err == nil {
		leftForRoot()
	}
	return err
}
