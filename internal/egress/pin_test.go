//go:build linux

package egress

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/aigate-dev/aigate/internal/dns"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
)

// pinnedNet is a fakeNet that found policy ids pinned, as a loader.Net
// opened with a PinPath does.
type pinnedNet struct {
	*fakeNet
	adopted  []uint32
	released bool
	updates  int
}

func (p *pinnedNet) PinDir() string { return "/sys/fs/bpf/test/net" }
func (p *pinnedNet) TakeAdopted() []loader.AdoptedNet {
	var out []loader.AdoptedNet
	for _, id := range p.adopted {
		out = append(out, loader.AdoptedNet{ID: id})
	}
	p.adopted = nil
	return out
}
func (p *pinnedNet) Release() error { p.released = true; return nil }
func (p *pinnedNet) WriteEntry(id uint32, e loader.NetEntry, rule policy.RuleID) error {
	p.updates++
	return p.fakeNet.WriteEntry(id, e, rule)
}

// Adopt rewrites the policy and steers DNS to a new proxy without
// attaching again; an unclaimed pinned id is removed by Remove; Release
// closes the proxies without withdrawing anything or removing rules.
func TestAdoptAndRelease(t *testing.T) {
	n := &pinnedNet{fakeNet: newFakeNet(), adopted: []uint32{3, 7}}
	e := newEgress(n, Options{})
	var proxies []*fakeProxy
	e.start = func(c dns.Config) (proxy, error) {
		p := &fakeProxy{cfg: c}
		proxies = append(proxies, p)
		return p, nil
	}
	if got := e.Pinned(); !slices.Equal(got, []uint32{3, 7}) {
		t.Fatalf("Pinned = %v", got)
	}
	sb := &enforce.Sandbox{ID: 3, Name: "s3-p1", CgroupID: 42, CgroupPath: "/nonexistent", Policy: compile(t, policy.NetDeny, "example.com")}
	if err := e.Adopt(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	if err := e.Adopt(context.Background(), sb); err == nil {
		t.Fatal("adopted the same id twice")
	}
	if err := e.Adopt(context.Background(), &enforce.Sandbox{ID: 9, Policy: sb.Policy}); err == nil {
		t.Fatal("adopted an id that was not pinned")
	}
	if want := []string{"policy", "steer"}; !slices.Equal(n.calls, want) {
		t.Fatalf("calls %v, want %v (no sandbox, no attach: they are pinned)", n.calls, want)
	}
	if st, ok := e.Status(3); !ok || st.Mode != ModeProxy {
		t.Fatalf("status %+v %v", st, ok)
	}
	if got := e.Pinned(); !slices.Equal(got, []uint32{7}) {
		t.Fatalf("Pinned after Adopt = %v", got)
	}
	// The unclaimed id: its rules are removed.
	if err := e.Remove(7); err != nil {
		t.Fatal(err)
	}
	if n.calls[len(n.calls)-1] != "remove" {
		t.Fatalf("calls %v: Remove of a pinned id did not reach the Net", n.calls)
	}
	calls := len(n.calls)
	// The proxy's withdrawals after Release must not reach the maps.
	d, a := sb.Policy.Net.Domains[0], netip.MustParseAddr("192.0.2.1")
	updates := n.updates
	if err := proxies[0].cfg.Sink.UpdateAddrs(3, d, []netip.Addr{a}, nil); err != nil {
		t.Fatal(err)
	}
	if n.updates != updates+1 || !n.allows(3, a) {
		t.Fatalf("sink before Release: %d updates", n.updates-updates)
	}
	if err := e.Release(); err != nil {
		t.Fatal(err)
	}
	proxies[0].cfg.Sink.UpdateAddrs(3, d, nil, []netip.Addr{a})
	if !n.released || !proxies[0].closed || n.updates != updates+1 || !n.allows(3, a) || len(n.calls) != calls {
		t.Fatalf("after Release: released %v, proxy closed %v, updates %d, calls %v", n.released, proxies[0].closed, n.updates, n.calls[calls:])
	}
	if _, ok := <-e.Events(); ok {
		t.Fatal("Events open after Release")
	}
}
