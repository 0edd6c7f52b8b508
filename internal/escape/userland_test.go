//go:build linux

package escape

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// userlandTools are the real programs an agent works with; in the VM they
// come from the host through vmtest --host-root.
var userlandTools = []string{"bash", "python3", "node", "git"}

// requireUserland skips (fails in CI and the VM) when a real program is
// missing: the VM must be booted with vmtest --host-root.
func requireUserland(t *testing.T) {
	t.Helper()
	for _, tool := range userlandTools {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipUnlessKernel(t, tool+" is not installed (in the VM: vmtest --host-root)")
		}
	}
}

// TestEscapeInterpreterReads: the secret read by each interpreter's own
// file API rather than cat (bash's $(<file), python3's open, node's
// readFileSync, git hash-object) is refused every time, with an event
// naming the reader.
func TestEscapeInterpreterReads(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		requireUserland(t)
		r := b.sh(`
bash -c 'echo "$(<.env)"'; echo "bash=$?"
python3 -c 'print(open(".env").read())'; echo "python3=$?"
node -e 'console.log(require("fs").readFileSync(".env", "utf8"))'; echo "node=$?"
git hash-object .env; echo "git=$?"
`)
		if strings.Contains(r.stdout, "sk-escape-test-secret") {
			t.Fatalf("the secret was read:\n%s", r)
		}
		for _, want := range []string{"python3=1", "node=1", "git=128"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r)
			}
		}
		if strings.Contains(r.stdout, "bash=0\n") && !strings.Contains(r.stderr, ".env") {
			t.Errorf("bash reported no error for .env:\n%s", r)
		}
		for _, comm := range userlandTools {
			if !hasReadEvent(r, comm, ".env") {
				t.Errorf("no read event for .env by %s:\n%s", comm, r)
			}
		}
	})
}

// hasReadEvent reports whether r has a read event on target by comm.
func hasReadEvent(r result, comm, target string) bool {
	for _, e := range r.events {
		if e.Op == events.OpRead && e.Comm == comm && strings.Contains(e.Path, target) {
			return true
		}
	}
	return false
}
