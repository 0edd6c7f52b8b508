package cmdutil

import "runtime/debug"

// Set at build time: go build -ldflags "-X github.com/aigate-dev/aigate/internal/cmdutil.Version=v1.2.3 -X ...cmdutil.Commit=abc123"
var (
	// Version is aigate's version: a tag, or git describe's name of a commit.
	Version = "dev"
	// Commit is the commit it was built from; "" asks Go's build info.
	Commit = ""
)

// BuildCommit is the -ldflags commit, or the one Go recorded from the VCS.
func BuildCommit() string {
	if Commit != "" {
		return Commit
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
