//go:build darwin

package doctor

import (
	"context"
	"os"
	"time"

	"github.com/aigate-dev/aigate/internal/darwin"
)

// Run performs the macOS checks: the sandbox user setup recorded, pf, the
// anchor call in the loaded ruleset and in pf.conf. Options other than Euid
// are Linux's and ignored.
func Run(opts Options) *Report {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return darwinReport(ctx, darwin.ExecRunner{}, darwin.DefaultMachine(), opts.Euid, os.ReadFile)
}
