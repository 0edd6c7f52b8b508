//go:build linux

package loader

import (
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestExitRecVerifierFloors: the exit program (loaded on the host by the
// fanotify backend) is not pruned to a trivial body by the verifier (see
// testutil.CheckVerifierFloors).
func TestExitRecVerifierFloors(t *testing.T) {
	testutil.RequireRoot(t)
	spec, err := loadExitRec()
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVerifierFloors(t, spec, map[string]int{
		// Verified on the 6.18 host only (1990): tp_btf needs BTF of the
		// running kernel, and no VM run was made for it.
		"aigate_exit_record": 990,
	})
}
