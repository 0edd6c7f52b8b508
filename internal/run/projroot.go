//go:build linux

package run

import (
	"github.com/aigate-dev/aigate/internal/config"
)

// projectRootOK refuses a working directory that cannot be a project
// (config.CheckProjectRoot): the project directory, and the working
// directory beneath it, which the sandbox may write too.
func projectRootOK(paths *config.Paths, home string) error {
	if err := config.CheckProjectRoot(paths.ProjectRoot, home); err != nil {
		return err
	}
	return config.CheckProjectRoot(paths.WorkDir, home)
}

// holdsHome says whether dir is the home or a directory above it: as a
// writable directory of the sandbox's Landlock domain it would make the
// whole home writable.
func holdsHome(dir, home string) bool {
	return home != "" && config.Within(home, dir)
}
