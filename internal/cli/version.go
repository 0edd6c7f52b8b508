package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Set at build time: go build -ldflags "-X github.com/aigate-dev/aigate/internal/cli.version=v1.2.3 -X ...cli.commit=abc123"
var (
	version = "dev"
	commit  = ""
)

func newVersionCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print aigate's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.printf("%s", versionText())
			return nil
		},
	}
}

// versionText is what `aigate version` and `aigate --version` print. A
// version that already names the commit (git describe without a tag) is
// not followed by the commit again.
func versionText() string {
	c := buildCommit()
	head := "aigate " + version + "\n"
	if strings.TrimSuffix(version, "-dirty") != strings.TrimSuffix(c, "-dirty") {
		head += "commit " + c + "\n"
	}
	return head + fmt.Sprintf("%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildCommit is the -ldflags commit, or the one Go recorded from the VCS.
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && dirty {
			rev += "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "unknown"
}
