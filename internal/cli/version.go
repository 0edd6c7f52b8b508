package cli

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

func newVersionCmd(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print aigate's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.Printf("%s", versionText())
			return nil
		},
	}
}

// versionText is what `aigate version` and `aigate --version` print. A
// version that already names the commit (git describe without a tag) is
// not followed by the commit again.
func versionText() string {
	c := cmdutil.BuildCommit()
	head := "aigate " + cmdutil.Version + "\n"
	if strings.TrimSuffix(cmdutil.Version, "-dirty") != strings.TrimSuffix(c, "-dirty") {
		head += "commit " + c + "\n"
	}
	return head + fmt.Sprintf("%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
