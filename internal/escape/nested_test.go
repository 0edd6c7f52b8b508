//go:build linux

package escape

import (
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeNestedRun: a nested `aigate run` inside the sandbox (which
// would ask for a fresh sandbox and, with AIGATE_LANDLOCK=optional, for
// none of the Landlock domain) does not start its command: the sandbox
// cannot reach the agent's socket (a unix socket outside it: event), and
// the agent refuses requests from inside a sandbox besides.
func TestEscapeNestedRun(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		r := b.sh(machine.bin+" run -- sh -c 'echo NESTED-RAN'; echo nested=$?",
			"--quiet")
		r2 := b.sh("AIGATE_LANDLOCK=optional " + machine.bin + " run -- sh -c 'echo NESTED-RAN'")
		for _, r := range []result{r, r2} {
			if strings.Contains(r.stdout, "NESTED-RAN") {
				t.Errorf("a nested aigate run started its command:\n%s", r)
			}
			if !strings.Contains(r.stderr, "refusing to run") {
				t.Errorf("the nested run was not refused:\n%s", r)
			}
			if _, ok := r.denied(events.OpUnix, b.agent.sock); !ok && !strings.Contains(r.stderr, "inside a sandbox are refused") {
				t.Errorf("neither the unix rule nor the agent refused the nested run:\n%s", r)
			}
		}
	})
}
