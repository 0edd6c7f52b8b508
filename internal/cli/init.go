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

type initOptions struct {
	f       *cmdutil.Factory
	force   bool
	project bool
}

func newInitCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &initOptions{f: f}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write the default global config, or a project config with --project",
		Long: `Write ~/.aigate/config.yaml with aigate's defaults, each section commented:
secrets aigate denies reading (.env, keys, cloud credentials, ...), files it
denies writing (shell startup files, git hooks, aigate's own config),
programs it denies running (curl, ssh, ...) and the few domains agents may
reach. Edit it, or use "aigate deny" and "aigate allow".

With --project, write a minimal commented .aigate.yaml in the working
directory instead; aigate trusts the file it writes for you.

An existing file is never overwritten without --force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runInit(opts) },
	}
	cmd.Flags().BoolVar(&opts.force, "force", false, "overwrite an existing file (your edits to it are lost)")
	cmd.Flags().BoolVar(&opts.project, "project", false, "write .aigate.yaml in the working directory")
	return cmd
}

func runInit(o *initOptions) error {
	f := o.f
	paths, err := f.Paths()
	if err != nil {
		return err
	}
	target, content := paths.Global, policy.DefaultYAML()
	if o.project {
		target, content = paths.WorkDir+"/"+config.ProjectName, []byte(projectTemplate)
	}
	name := paths.Pretty(target)
	_, err = config.AsUser(paths.User, func() (os.FileInfo, error) { return os.Lstat(target) })
	switch {
	case err == nil && !o.force:
		return fmt.Errorf("%s already exists; run `aigate init%s --force` to replace it with the defaults (your changes to it are lost)",
			name, map[bool]string{true: " --project", false: ""}[o.project])
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("init: %w", err)
	}
	existed := err == nil
	if !o.project {
		if err := config.EnsureDir(paths.Dir, paths.User); err != nil {
			return err
		}
	}
	if err := config.WriteFileAtomic(target, content, 0o644, paths.User); err != nil {
		return err
	}
	if !o.project {
		// The defaults replace whatever the file held: accepted as they are.
		acceptEdit(f, paths, policyFile{}, policyFile{path: target, data: content}, false)
	}
	verb := "wrote"
	if existed {
		verb = "replaced"
	}
	if !o.project {
		f.Printf("%s %s with the defaults.\nNext: `aigate status` to see what is denied, `aigate doctor` to check the kernel.\n", verb, name)
		return nil
	}
	recs, err := cmdutil.OpenTrust(f, paths, "")
	if err != nil {
		return err
	}
	if err := recs.Set(target, content, f.Now()); err != nil {
		return err
	}
	f.Printf("%s %s (trusted).\nAdd rules with `aigate deny read --project PATTERN`.\n", verb, name)
	return nil
}
