//go:build linux

package loader

import (
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// netLeft is what the programs learned for the sandboxes of a Net: the use
// counts (addr_use) by policy, the bound unix socket names (unix_bound) by
// sandbox cgroup, and the marks that say a policy or cgroup has some.
type netLeft struct {
	uses, usesMarked   map[uint32]int
	bound, boundMarked map[uint64]int
}

func readLeft(t *testing.T, n *Net) netLeft {
	t.Helper()
	l := netLeft{map[uint32]int{}, map[uint32]int{}, map[uint64]int{}, map[uint64]int{}}
	var (
		uk  netAddrUseKey
		cnt int64
		id  uint32
		cg  uint64
		bk  netUnixUnixBoundKey
		bv  netUnixUnixBoundVal
		m   uint8
	)
	it := n.objs.AddrUse.Iterate()
	for it.Next(&uk, &cnt) {
		l.uses[uk.PolicyId]++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	it = n.objs.AddrUsePolicies.Iterate()
	for it.Next(&id, &m) {
		l.usesMarked[id]++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if n.unix == nil {
		return l
	}
	it = n.unix.objs.UnixBound.Iterate()
	for it.Next(&bk, &bv) {
		l.bound[bk.CgroupId]++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	it = n.unix.objs.UnixBoundCgroups.Iterate()
	for it.Next(&cg, &m) {
		l.boundMarked[cg]++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestNetRemoveKeepsOtherSandboxes: removing a sandbox's network policy
// drops what the programs learned of it (the use count of an address it
// connected to, the unix socket name it bound) with the marks that make
// the teardown look for them, and nothing of another sandbox, whose
// connections its policy still decides, learning again as before; a
// sandbox that learned nothing is removed without touching the others'
// either. Two sandboxes share the same address and a socket directory, so
// that only the policy id and the cgroup tell their entries apart.
func TestNetRemoveKeepsOtherSandboxes(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	confined := kernelAtLeast(t, 6, 7)
	dir := t.TempDir()
	sock := func(name string) string { return "unixself " + filepath.Join(dir, name+".sock") }
	c := compileNet(t, policy.NetDeny, policy.LoopbackNone, "10.9.9.9")
	const a, b, idle = 21, 22, 23
	ga := env.sandbox(n, a, c.Net, nil, false)
	gb := env.sandbox(n, b, c.Net, nil, false)
	gIdle := env.sandbox(n, idle, c.Net, nil, false)
	run := func(g *cgroup.Group, ops ...string) {
		t.Helper()
		got, _ := env.run(g, ops...)
		for i, op := range ops {
			if got[i] != 0 {
				t.Fatalf("sandbox cgroup %d: %s: errno %d", g.ID, op, got[i])
			}
		}
	}
	run(ga, "udp 10.9.9.9:9", sock("a"))
	run(gb, "udp 10.9.9.9:9", sock("b"))
	if got, _ := env.run(gIdle, "udp 10.1.2.3:9"); got[0] != syscall.EPERM {
		t.Fatalf("idle sandbox: errno %d, want EPERM (a refusal learns nothing)", got[0])
	}
	drain(n.Events())

	want := func(what string, uses map[uint32]int, bound map[uint64]int) {
		t.Helper()
		l := readLeft(t, n)
		for id, k := range uses {
			if l.uses[id] != k || (l.usesMarked[id] != 0) != (k != 0) {
				t.Errorf("%s: policy %d has %d use counts (marked: %d), want %d", what, id, l.uses[id], l.usesMarked[id], k)
			}
		}
		if !confined {
			return
		}
		for cg, k := range bound {
			if l.bound[cg] != k || (l.boundMarked[cg] != 0) != (k != 0) {
				t.Errorf("%s: cgroup %d has %d bound names (marked: %d), want %d", what, cg, l.bound[cg], l.boundMarked[cg], k)
			}
		}
	}
	want("before", map[uint32]int{a: 1, b: 1, idle: 0}, map[uint64]int{ga.ID: 1, gb.ID: 1, gIdle.ID: 0})

	if err := env.rules[idle].remove(); err != nil {
		t.Fatal(err)
	}
	want("after removing the sandbox that learned nothing", map[uint32]int{a: 1, b: 1}, map[uint64]int{ga.ID: 1, gb.ID: 1})

	if err := env.rules[a].remove(); err != nil {
		t.Fatal(err)
	}
	want("after removing a", map[uint32]int{a: 0, b: 1}, map[uint64]int{ga.ID: 0, gb.ID: 1})

	// b is still confined by its policy and learns as before.
	got, _ := env.run(gb, "udp 10.9.9.9:9", "udp 10.1.2.3:9", sock("b2"), "unix "+filepath.Join(dir, "a.sock"))
	// a.sock: refused where unix sockets are confined, nothing there
	// where not; both fail with ENOENT (a refused path is led nowhere),
	// the event tells them apart.
	wantErr := []syscall.Errno{0, syscall.EPERM, 0, syscall.ENOENT}
	for i := range wantErr {
		if got[i] != wantErr[i] {
			t.Errorf("b after a's removal: op %d: errno %d, want %d", i, got[i], wantErr[i])
		}
	}
	nev := 1
	if confined {
		nev = 2
	}
	evs := nextEvents(t, n.Events(), nev)
	if ev := evs[0]; ev.Kind != events.KindNet || ev.Op != events.OpConnect || ev.CgroupID != gb.ID ||
		ev.Addr != netip.MustParseAddrPort("10.1.2.3:9") {
		t.Errorf("b's refusal: %+v", ev)
	}
	if confined {
		if ev := evs[1]; ev.Op != events.OpUnix || ev.CgroupID != gb.ID || ev.Path != filepath.Join(dir, "a.sock") {
			t.Errorf("b's unix refusal: %+v", ev)
		}
	}
	want("after b ran again", map[uint32]int{a: 0, b: 1}, map[uint64]int{ga.ID: 0, gb.ID: 2})

	if err := env.rules[b].remove(); err != nil {
		t.Fatal(err)
	}
	want("after removing b", map[uint32]int{b: 0}, map[uint64]int{gb.ID: 0})
}
