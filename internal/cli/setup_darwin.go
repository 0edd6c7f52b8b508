package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/darwin"
)

func newSetupCmd(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "setup",
		Short: "Create the sandbox user and the pf anchor that aigate run needs on macOS",
		Long: `Prepare this Mac for aigate run (run it with sudo, once; again after a
macOS update replaced /etc/pf.conf):

  - create the hidden system user and group ` + darwin.DefaultUserName + ` with dscl, with the
    highest id in ` + fmt.Sprint(darwin.IDMin) + `-` + fmt.Sprint(darwin.IDMax) + ` free as both UID and GID, home
    ` + darwin.DefaultHome + `; an existing ` + darwin.DefaultUserName + ` is kept;
  - record it in ` + darwin.DataDir + `/` + darwin.UserFileName + `;
  - add the line anchor "` + darwin.AnchorName + `" to /etc/pf.conf between
    "# BEGIN aigate" and "# END aigate" markers (the previous file is kept as
    /etc/pf.conf` + darwin.PFConfBackupSuffix + `), reload it with pfctl -f, and create pflog0;
  - check the result like aigate doctor.

pf is left enabled or disabled as it was: each run enables it with its own
reference and releases it at the end. sudo aigate reset --force undoes it all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runSetup(cmd.Context(), f) },
	}
}

func runSetup(ctx context.Context, f *cmdutil.Factory) error {
	if f.Env.Euid != 0 {
		return errors.New("setup creates a user and edits /etc/pf.conf: run it with sudo (sudo aigate setup)")
	}
	res, err := darwin.Setup(ctx, darwin.ExecRunner{}, darwin.DefaultMachine())
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	u := res.User
	if res.CreatedUser {
		f.Printf("created user and group %s (uid %d, gid %d, home %s)\n", u.Name, u.UID, u.GID, u.Home)
	} else {
		f.Printf("user %s exists (uid %d, gid %d): kept\n", u.Name, u.UID, u.GID)
	}
	if res.PFConfChanged {
		f.Printf("added the %s anchor to %s (previous file: %s) and reloaded pf\n", darwin.AnchorName, darwin.PFConf, res.Backup)
	} else {
		f.Printf("%s already calls the %s anchor; reloaded pf\n", darwin.PFConf, darwin.AnchorName)
	}
	for _, w := range res.Warnings {
		f.Warnf("%s", w)
	}
	f.Printf("\n")
	printDoctor(f, f.Doctor(false))
	return nil
}

// ResetAgentPlan lists what ResetAgent would remove on macOS, for reset's
// dry run: what a crashed run left, the pf.conf block, the sandbox user and
// its record.
func ResetAgentPlan() []string {
	return darwin.ResetPlan(context.Background(), darwin.ExecRunner{}, darwin.DefaultMachine())
}

// ResetAgent undoes aigate setup and whatever a crashed run left behind.
func ResetAgent(f *cmdutil.Factory) error {
	if f.Env.Euid != 0 {
		return errors.New("removing the sandbox user and the pf anchor needs root: run sudo aigate reset --force")
	}
	m := darwin.DefaultMachine()
	m.Alive = darwin.Alive
	return darwin.Reset(context.Background(), darwin.ExecRunner{}, m, func(s string) { f.Printf("%s\n", s) })
}
