//go:build linux

package loader

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
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
	if err := sharer.SetPolicy(9, c.Net, nil); err != nil {
		t.Fatal(err)
	}
	if err := sharer.Attach(9, g.Path); err != nil {
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
	if err := owner.Remove(9); err != nil {
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

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	if network != "ip" {
		return nil, errors.New("network " + network)
	}
	if a, ok := f[host]; ok {
		return slices.Clone(a), nil
	}
	return nil, errors.New("no such host " + host)
}

func TestResolveDomains(t *testing.T) {
	r := fakeResolver{
		"api.example.test": {netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("2001:db8::7")},
	}
	got, err := ResolveDomains(context.Background(), []policy.DomainEntry{
		{Name: "api.example.test", Port: 443, Rule: 1},
		{Name: "api.example.test", Rule: 2},
		{Name: "example.test", Wildcard: true, Rule: 3},
		{Name: "gone.example.test", Rule: 4},
	}, r)
	if err == nil || !strings.Contains(err.Error(), "gone.example.test") {
		t.Fatalf("error %v, want one naming gone.example.test", err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::7")}
	if len(got) != 1 || !slices.Equal(got["api.example.test"], want) {
		t.Fatalf("resolved %v, want api.example.test -> %v (unmapped), wildcards skipped", got, want)
	}
}
