//go:build linux

package dns

import (
	"net"
	"runtime"
	"testing"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/testutil/testcgroup"
)

// TestIdleChecksHoldNoBuffers: the member check and the owner finder a
// proxy opens for its sandbox cost their sockets, not their lookups'
// buffers. The agent runs a proxy per sandbox; when each held its own
// (8 KiB per sock_diag socket, 41 KiB for the owner scan), a thousand
// idle sandboxes held 57 MiB of buffers only a refused query reads.
func TestIdleChecksHoldNoBuffers(t *testing.T) {
	parent, _ := testcgroup.Parent(t, "aigate-dns")
	g, err := cgroup.Create(parent, "sb")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const n = 50
	// A first pair, unmeasured, fills what the package sets up once.
	if m, err := newMemberCheck(g.Path, pc); err == nil {
		m.close()
	}
	if f, err := newOwnerFinder(g.Path, pc, DefaultOwnerBudget); err == nil {
		f.close()
	}
	var before, after runtime.MemStats
	members := make([]*memberCheck, 0, n)
	finders := make([]*ownerFinder, 0, n)
	runtime.GC()
	runtime.ReadMemStats(&before)
	defer func() {
		for i := range members {
			members[i].close()
		}
		for i := range finders {
			finders[i].close()
		}
	}()
	for range n {
		m, err := newMemberCheck(g.Path, pc)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
		f, err := newOwnerFinder(g.Path, pc, DefaultOwnerBudget)
		if err != nil {
			t.Fatal(err)
		}
		finders = append(finders, f)
	}
	// What stays allocated, not what the setup read and let go
	// (mountinfo, the namespace check).
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Generous: the two hold a few hundred bytes (paths, two
	// structs); their buffers were 57 KiB.
	const budget = 8 << 10
	if per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n; per > budget {
		t.Errorf("a member check and an owner finder hold %d bytes, budget %d", per, budget)
	}
	t.Logf("a member check and an owner finder hold %d bytes", (int64(after.HeapAlloc)-int64(before.HeapAlloc))/n)
}
