//go:build linux

package loader

import (
	"errors"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestNetSharedMaps loads a second object over the first one's sandbox
// table, ring buffer and counters, as the LSM backend does: the sandbox
// entered through the owner confines the sharer's programs, and the
// sharer's denials arrive on the owner's event stream and counters.
func TestNetSharedMaps(t *testing.T) {
	env := newNetEnv(t)
	owner := openNet(t, NetOptions{Backend: "owner"})
	o := &owner.objs
	sharer := openNet(t, NetOptions{MapReplacements: map[string]*ebpf.Map{
		MapSandboxes: o.Sandboxes, MapSandboxLevels: o.SandboxLevels, MapEvents: o.Events, MapCounters: o.Counters,
	}})
	if sharer.Events() != nil {
		t.Fatal("a sharing Net must not read the owner's ring buffer")
	}
	if _, err := sharer.Stats(); !errors.Is(err, errShared) {
		t.Fatalf("Stats of a sharing Net: %v, want errShared", err)
	}
	g := env.cgroup("shared")
	if err := sharer.AddSandbox(9, g, false); !errors.Is(err, errShared) {
		t.Fatalf("AddSandbox on a sharing Net: %v, want errShared", err)
	}
	if err := owner.AddSandbox(9, g, false); err != nil {
		t.Fatal(err)
	}
	c := compileNet(t, policy.NetDeny, policy.LoopbackAll)
	r := &netRules{n: sharer, id: 9}
	t.Cleanup(func() { r.remove() })
	if err := r.set(c.Net, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.attach(g); err != nil {
		t.Fatal(err)
	}
	got, _ := env.run(g, "tcp 10.1.2.3:80")
	if got[0] != syscall.EPERM {
		t.Fatalf("errno %d, want EPERM", got[0])
	}
	ev := nextEvents(t, owner.Events(), 1)[0]
	if ev.Backend != "owner" || ev.Op != events.OpConnect || ev.CgroupID != g.ID {
		t.Fatalf("event %+v", ev)
	}
	st, err := owner.Stats()
	if err != nil || counter(st, events.OpConnect, false) != 1 {
		t.Fatalf("owner stats %+v, %v", st, err)
	}
	if err := owner.RemoveSandbox(g.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.run(g, "tcp 10.1.2.3:80"); got[0] != 0 {
		t.Fatalf("after the owner removed the sandbox: errno %d", got[0])
	}
}

func TestOpenNetPartialSharing(t *testing.T) {
	_, err := OpenNet(NetOptions{MapReplacements: map[string]*ebpf.Map{MapEvents: nil, MapSandboxes: &ebpf.Map{}}})
	if err == nil {
		t.Fatal("OpenNet accepted a partial set of shared maps")
	}
}
