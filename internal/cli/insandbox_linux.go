//go:build linux

package cli

import (
	"os"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// inSandbox reports whether this process runs inside an aigate sandbox:
// its cgroup lies below the sandboxes' parent cgroup.
func inSandbox() bool {
	cg, err := cgroup.ProcessCgroup(os.Getpid())
	return err == nil && cgroup.Within(cg, "/"+sandbox.DefaultParent)
}
