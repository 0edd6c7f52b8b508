//go:build linux

package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/dns"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
)

// fakeNet records what Egress asks of a (sharing) loader.Net.
type fakeNet struct {
	mu        sync.Mutex
	calls     []string
	settings  map[uint32]bool
	entries   map[uint32]map[loader.NetEntry]policy.RuleID
	attached  map[uint32]bool
	proxies   map[uint32]uint16
	failSteer error
	failAt    string
}

func newFakeNet() *fakeNet {
	return &fakeNet{
		settings: map[uint32]bool{}, entries: map[uint32]map[loader.NetEntry]policy.RuleID{},
		attached: map[uint32]bool{}, proxies: map[uint32]uint16{},
	}
}

// callsNow is a copy of the calls so far; Egress's loops may add more.
func (f *fakeNet) callsNow() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeNet) call(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	if s == f.failAt {
		return errors.New(s + " failed")
	}
	return nil
}

// allows reports whether policy id's allow trie holds the address a.
func (f *fakeNet) allows(id uint32, a netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for e := range f.entries[id] {
		if !e.Deny && e.Prefix == netip.PrefixFrom(a, a.BitLen()) {
			return true
		}
	}
	return false
}

func (f *fakeNet) WriteSettings(id uint32, _ policy.NetPolicy) error {
	if err := f.call("policy"); err != nil {
		return err
	}
	f.mu.Lock()
	f.settings[id] = true
	f.mu.Unlock()
	return nil
}
func (f *fakeNet) WriteEntry(id uint32, e loader.NetEntry, rule policy.RuleID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.entries[id] == nil {
		f.entries[id] = map[loader.NetEntry]policy.RuleID{}
	}
	f.entries[id][e] = rule
	return nil
}
func (f *fakeNet) DeleteEntry(id uint32, e loader.NetEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.entries[id], e)
	if len(f.entries[id]) == 0 {
		delete(f.entries, id)
	}
	return nil
}
func (f *fakeNet) WriteUnixAllow(uint32, loader.UnixAllow, policy.FileSet) (loader.UnixAllow, error) {
	return nil, nil
}
func (f *fakeNet) AddrInUse(uint32, netip.Addr) (bool, error)   { return false, nil }
func (f *fakeNet) AddSandbox(uint32, *cgroup.Group, bool) error { return f.call("sandbox") }
func (f *fakeNet) RemoveSandbox(uint64) error                   { return nil }
func (f *fakeNet) Attach(id uint32, _ string) (*loader.NetLinks, error) {
	if err := f.call("attach"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.attached[id] = true
	f.mu.Unlock()
	return &loader.NetLinks{}, nil
}
func (f *fakeNet) Detach(l *loader.NetLinks) error {
	if l == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.attached) // one sandbox per test attaches
	return nil
}
func (f *fakeNet) SetDNSProxy(id uint32, _, _ netip.Addr, port uint16) error {
	if err := f.call("steer"); err != nil {
		return err
	}
	if f.failSteer != nil {
		return f.failSteer
	}
	f.mu.Lock()
	f.proxies[id] = port
	f.mu.Unlock()
	return nil
}
func (f *fakeNet) ClearDNSProxy(id uint32) error {
	if err := f.call("clear"); err != nil {
		return err
	}
	f.mu.Lock()
	delete(f.proxies, id)
	f.mu.Unlock()
	return nil
}
func (f *fakeNet) RemovePolicy(id uint32, _ loader.UnixAllow, _ uint64) error {
	f.call("remove")
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.settings, id)
	delete(f.proxies, id)
	return nil
}
func (f *fakeNet) GuardIDEPort(uint64, uint16) error { return nil }
func (f *fakeNet) Events() <-chan events.Event       { return nil }
func (f *fakeNet) Stats() (enforce.Stats, error)     { return enforce.Stats{}, nil }
func (f *fakeNet) Close() error                      { return nil }

// A fakeNet pins nothing, as a loader.Net opened without a PinPath.
func (f *fakeNet) PinDir() string                   { return "" }
func (f *fakeNet) TakeAdopted() []loader.AdoptedNet { return nil }
func (f *fakeNet) Release() error                   { return errors.New("release: nothing is pinned") }

type fakeProxy struct {
	cfg    dns.Config
	closed bool
}

func (p *fakeProxy) Port() uint16 { return 5353 }
func (p *fakeProxy) DomainOf(a netip.Addr) string {
	if a == netip.MustParseAddr("192.0.2.7") {
		return "learned.example"
	}
	return ""
}
func (p *fakeProxy) Stats() dns.Stats { return dns.Stats{} }
func (p *fakeProxy) Close() error     { p.closed = true; return nil }

type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return slices.Clone(a), nil
	}
	return nil, fmt.Errorf("no such host %s", host)
}

func compile(t *testing.T, mode policy.NetMode, allow ...string) *policy.Compiled {
	t.Helper()
	p := &policy.Policy{Net: mode, Loopback: policy.LoopbackAll}
	for _, a := range allow {
		p.AllowNet = append(p.AllowNet, policy.Endpoint{Raw: a})
	}
	c, err := policy.Compile(p, policy.Env{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPlan(t *testing.T) {
	deny := compile(t, policy.NetDeny, "api.example.com").Net
	tests := []struct {
		name   string
		np     policy.NetPolicy
		audit  bool
		proxy  bool
		answer policy.NetMode
	}{
		{"deny with domains", deny, false, true, policy.NetDeny},
		{"deny without domains still filters DNS", compile(t, policy.NetDeny).Net, false, true, policy.NetDeny},
		{"audit answers every name", deny, true, true, policy.NetAllow},
		{"allow has nothing to learn", compile(t, policy.NetAllow).Net, false, false, policy.NetAllow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy, answer := plan(tt.np, tt.audit)
			if proxy != tt.proxy || answer.Mode != tt.answer {
				t.Fatalf("plan = %v, %s; want %v, %s", proxy, answer.Mode, tt.proxy, tt.answer)
			}
			if !slices.Equal(answer.Domains, tt.np.Domains) {
				t.Fatal("the proxy's policy lost the domains")
			}
		})
	}
}

// TestModeSelection drives Add through each way a sandbox's domains can be
// kept and checks what reached the Net and what Status says.
func TestModeSelection(t *testing.T) {
	addrA := netip.MustParseAddr("192.0.2.10")
	tests := []struct {
		name      string
		c         *policy.Compiled
		mode      policy.Mode
		proxyErr  error
		steerErr  error
		want      Mode
		steered   bool
		resolved  int
		proxyMode policy.NetMode
	}{
		{name: "proxy", c: compile(t, policy.NetDeny, "a.example"), want: ModeProxy, steered: true, proxyMode: policy.NetDeny},
		{name: "audit proxy refuses nothing", c: compile(t, policy.NetDeny, "a.example"), mode: policy.ModeAudit,
			want: ModeProxy, steered: true, proxyMode: policy.NetAllow},
		{name: "allow", c: compile(t, policy.NetAllow), want: ModeNone},
		{name: "proxy cannot start", c: compile(t, policy.NetDeny, "a.example", "*.b.example"),
			proxyErr: errors.New("listen on ::1: cannot assign requested address"), want: ModeResolve, resolved: 1},
		{name: "steering refused", c: compile(t, policy.NetDeny, "a.example"),
			steerErr: errors.New("steer DNS: operation not permitted"), want: ModeResolve, resolved: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := newFakeNet()
			fn.failSteer = tt.steerErr
			e := newEgress(fn, Options{Resolver: fakeResolver{"a.example": {addrA}}, ResolveEvery: time.Hour})
			var started *fakeProxy
			e.start = func(c dns.Config) (proxy, error) {
				if tt.proxyErr != nil {
					return nil, tt.proxyErr
				}
				started = &fakeProxy{cfg: c}
				return started, nil
			}
			t.Cleanup(func() { e.Close() })
			sb := &enforce.Sandbox{ID: 7, Name: "s", CgroupID: 70, CgroupPath: "/x", Policy: tt.c, Mode: tt.mode}
			if err := e.Add(context.Background(), sb); err != nil {
				t.Fatal(err)
			}
			st, ok := e.Status(7)
			if !ok || st.Mode != tt.want {
				t.Fatalf("status %+v, want mode %s", st, tt.want)
			}
			if (tt.want == ModeResolve) != (st.Reason != "") {
				t.Errorf("reason %q for mode %s", st.Reason, st.Mode)
			}
			if _, steered := fn.proxies[7]; steered != tt.steered {
				t.Errorf("steered = %v, want %v", steered, tt.steered)
			}
			// The agent names events through DomainOf: by the proxy's
			// answers when steered, never by another cgroup's.
			if named := e.DomainOf(70, netip.MustParseAddr("192.0.2.7")) == "learned.example"; named != tt.steered {
				t.Errorf("domain named by the proxy = %v, want %v", named, tt.steered)
			}
			if d := e.DomainOf(71, netip.MustParseAddr("192.0.2.7")); d != "" {
				t.Errorf("another cgroup's address named %q", d)
			}
			if tt.steered && started.cfg.Net.Mode != tt.proxyMode {
				t.Errorf("proxy answers by %s, want %s", started.cfg.Net.Mode, tt.proxyMode)
			}
			if tt.steerErr != nil && (started == nil || !started.closed) {
				t.Error("the proxy whose steering failed was not closed")
			}
			if got := fn.allows(7, addrA); got != (tt.resolved == 1) || st.Resolved != tt.resolved {
				t.Errorf("address of a.example allowed: %v (status %d), want %d address(es)", got, st.Resolved, tt.resolved)
			}
			if !fn.attached[7] {
				t.Error("programs not attached")
			}
			if calls := fn.callsNow(); slices.Index(calls, "attach") != len(calls)-1 {
				t.Errorf("attach is not the last step: %v", calls)
			}
		})
	}
}

// TestAddUndoesItself: a failure at any step leaves no policy, proxy or
// attachment, and the id can be used again.
func TestAddUndoesItself(t *testing.T) {
	for _, step := range []string{"policy", "steer", "attach"} {
		t.Run(step, func(t *testing.T) {
			fn := newFakeNet()
			fn.failAt = step
			e := newEgress(fn, Options{Resolver: fakeResolver{}, ResolveEvery: time.Hour})
			var proxies []*fakeProxy
			e.start = func(c dns.Config) (proxy, error) {
				p := &fakeProxy{cfg: c}
				proxies = append(proxies, p)
				return p, nil
			}
			defer e.Close()
			sb := &enforce.Sandbox{ID: 3, Name: "s", CgroupPath: "/x", Policy: compile(t, policy.NetDeny, "a.example")}
			err := e.Add(context.Background(), sb)
			if step == "steer" {
				// Steering is not essential: Add falls back and succeeds.
				if err != nil {
					t.Fatal(err)
				}
				if st, _ := e.Status(3); st.Mode != ModeResolve {
					t.Fatalf("mode %s", st.Mode)
				}
				return
			}
			if err == nil {
				t.Fatal("Add succeeded")
			}
			if len(fn.settings)+len(fn.entries)+len(fn.attached)+len(fn.proxies) != 0 {
				t.Errorf("left behind: %v %v %v %v", fn.settings, fn.entries, fn.attached, fn.proxies)
			}
			for _, p := range proxies {
				if !p.closed {
					t.Error("proxy left running")
				}
			}
			if _, ok := e.Status(3); ok {
				t.Error("failed sandbox still listed")
			}
			fn.failAt = ""
			if err := e.Add(context.Background(), sb); err != nil {
				t.Fatalf("id not released: %v", err)
			}
		})
	}
}

// TestResolveKeepsAddressesOnFailure: the periodic round replaces what
// resolves, and keeps the last addresses of names that fail this time.
func TestResolveKeepsAddressesOnFailure(t *testing.T) {
	fn := newFakeNet()
	a1, a2, b1 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("198.51.100.1")
	r := fakeResolver{"a.example": {a1}, "b.example": {b1}}
	var mu sync.Mutex
	e := newEgress(fn, Options{Resolver: resolverFunc(func(ctx context.Context, n, h string) ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		return r.LookupNetIP(ctx, n, h)
	}), ResolveEvery: 20 * time.Millisecond})
	e.start = func(dns.Config) (proxy, error) { return nil, errors.New("no proxy") }
	defer e.Close()
	sb := &enforce.Sandbox{ID: 1, Name: "s", CgroupPath: "/x", Policy: compile(t, policy.NetDeny, "a.example", "b.example")}
	if err := e.Add(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	r["a.example"] = []netip.Addr{a2}
	delete(r, "b.example")
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fn.allows(1, a2) && !fn.allows(1, a1) {
			if !fn.allows(1, b1) {
				t.Fatal("b.example lost its address when it failed to resolve")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a.example not re-resolved")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, _ := e.Status(1); st.ResolveErr == "" || st.Resolved != 2 {
		t.Errorf("status %+v", st)
	}
	if err := e.Remove(1); err != nil {
		t.Fatal(err)
	}
	n := len(fn.callsNow())
	time.Sleep(60 * time.Millisecond)
	if calls := fn.callsNow(); len(calls) != n {
		t.Errorf("the loop kept writing after Remove: %v", calls[n:])
	}
}

type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

// TestProxyRefusalsCounted: each refusal the proxy reports is an event on
// Events and one more in Stats, also when the event is dropped.
func TestProxyRefusalsCounted(t *testing.T) {
	fn := newFakeNet()
	e := newEgress(fn, Options{EventBuffer: 1})
	var cfg dns.Config
	e.start = func(c dns.Config) (proxy, error) { cfg = c; return &fakeProxy{cfg: c}, nil }
	c := compile(t, policy.NetDeny, "a.example")
	if err := e.Add(context.Background(), &enforce.Sandbox{ID: 1, Name: "s", CgroupPath: "/x", Policy: c}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"exfil.attacker.test", "second.attacker.test"} {
		cfg.Report(events.Event{Kind: events.KindNet, Op: events.OpDNS, Domain: n, Rule: uint32(c.Net.DenyRule)})
	}
	ev := <-e.Events()
	if ev.Domain != "exfil.attacker.test" || ev.Rule != uint32(c.Net.DenyRule) || ev.Audit {
		t.Errorf("event %+v", ev)
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := []enforce.Counter{{Kind: events.KindNet, Op: events.OpDNS, Value: 2}}
	if !slices.Equal(st.Violations, want) || st.EventsDropped != 1 {
		t.Fatalf("stats %+v, want %v and 1 dropped", st, want)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-e.Events(); open {
		t.Fatal("Events not closed by Close")
	}
}

func TestMergeStats(t *testing.T) {
	a := enforce.Stats{EventsDropped: 1, Violations: []enforce.Counter{
		{Kind: events.KindNet, Op: events.OpConnect, Value: 2},
		{Kind: events.KindFile, Op: events.OpRead, Value: 5},
	}}
	b := enforce.Stats{EventsDropped: 2, Violations: []enforce.Counter{
		{Kind: events.KindNet, Op: events.OpConnect, Value: 3},
		{Kind: events.KindNet, Op: events.OpConnect, Audit: true, Value: 1},
	}}
	got := MergeStats(a, b)
	want := []enforce.Counter{
		{Kind: events.KindFile, Op: events.OpRead, Value: 5},
		{Kind: events.KindNet, Op: events.OpConnect, Value: 5},
		{Kind: events.KindNet, Op: events.OpConnect, Audit: true, Value: 1},
	}
	if !slices.Equal(got.Violations, want) || got.EventsDropped != 3 {
		t.Fatalf("got %+v", got)
	}
}

// TestUpdateAddrsClaims: addresses learned later are written at once and
// deleted when removed; one claimed by two domains stays until both let
// go; the policy written again replaces them; Remove leaves no entry.
func TestUpdateAddrsClaims(t *testing.T) {
	fn := newFakeNet()
	e := newEgress(fn, Options{})
	var cfg dns.Config
	e.start = func(c dns.Config) (proxy, error) { cfg = c; return &fakeProxy{cfg: c}, nil }
	defer e.Close()
	c := compile(t, policy.NetDeny, "a.example.test", "b.example.test:443")
	sb := &enforce.Sandbox{ID: 4, Name: "s", CgroupPath: "/x", Policy: c}
	if err := e.Add(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	a, b := c.Net.Domains[0], c.Net.Domains[1]
	addr := netip.MustParseAddr("10.9.9.9")
	on := func(port uint16) loader.NetEntry {
		return loader.NetEntry{Prefix: netip.PrefixFrom(addr, 32), Port: port}
	}
	check := func(what string, want443, want0 bool) {
		t.Helper()
		fn.mu.Lock()
		defer fn.mu.Unlock()
		_, got443 := fn.entries[4][on(443)]
		_, got0 := fn.entries[4][on(0)]
		if got443 != want443 || got0 != want0 {
			t.Fatalf("%s: entry for port 443 %v, any port %v; want %v, %v", what, got443, got0, want443, want0)
		}
	}
	update := func(d policy.DomainEntry, add, remove []netip.Addr) {
		t.Helper()
		if err := cfg.Sink.UpdateAddrs(4, d, add, remove); err != nil {
			t.Fatal(err)
		}
	}
	check("nothing resolved", false, false)
	update(b, []netip.Addr{addr}, nil)
	check("b resolved (port 443)", true, false)
	update(a, []netip.Addr{addr, addr}, nil)
	check("a and b resolved", true, true)
	update(a, nil, []netip.Addr{addr})
	check("a expired", true, false)
	// The mapped form is the same address.
	update(a, []netip.Addr{netip.AddrFrom16(addr.As16())}, nil)
	check("a resolved again, v4-mapped", true, true)
	e.mu.Lock()
	s := e.sandboxes[4]
	e.mu.Unlock()
	if err := e.setPolicy(s, c.Net, map[string][]netip.Addr{"a.example.test": {addr}}); err != nil {
		t.Fatal(err)
	}
	check("policy set again with a resolved", false, true)
	update(a, nil, []netip.Addr{addr})
	check("a removed", false, false)
	if err := e.Remove(4); err != nil {
		t.Fatal(err)
	}
	if len(fn.entries)+len(fn.settings) != 0 {
		t.Fatalf("left after Remove: %v %v", fn.entries, fn.settings)
	}
}
