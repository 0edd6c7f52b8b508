//go:build linux

package loader

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Values of net_settings.mode and .loopback, and the trie key's header
// (aigate.h enums, generated in kernel_bpfel.go).
const (
	netModeAllow = uint8(kernelAigateNetModeAIGATE_NET_ALLOW)
	netModeDeny  = uint8(kernelAigateNetModeAIGATE_NET_DENY)
	netKeyBits   = int(kernelAigateNetKeyAIGATE_NET_KEY_BITS) // policy id and port precede the address

	netLoopbackNone = uint8(kernelAigateLoopbackAIGATE_LOOPBACK_NONE)
	netLoopbackOwn  = uint8(kernelAigateLoopbackAIGATE_LOOPBACK_OWN)
	netLoopbackAll  = uint8(kernelAigateLoopbackAIGATE_LOOPBACK_ALL)
)

// NetOptions configures OpenNet.
type NetOptions struct {
	// MapReplacements shares maps with another aigate object, by name
	// (MapSandboxes, MapSandboxLevels, MapEvents, MapCounters): the LSM
	// backend passes its own so that one sandbox table, one ring buffer and
	// one set of counters serve both objects. When it holds none of them,
	// Net runs standalone (beside the fanotify backend) and owns them:
	// AddSandbox, Events and Stats work on its own maps.
	MapReplacements map[string]*ebpf.Map
	// Backend is stamped on the events of a standalone Net.
	Backend string
	// SkipUnix leaves unix sockets alone: for a caller whose BPF LSM
	// programs confine them by peer (unix_stream_connect), which is exact
	// where the cgroup programs here only see socket names.
	SkipUnix bool
	// PinPath pins the object's own maps and each sandbox's cgroup links
	// in this bpffs directory (net_pin.go), so that the egress policies
	// outlive the process: Release leaves them, Close removes them, and
	// the next OpenNet with the same PinPath adopts them (Adopted). It
	// needs the shared maps (they are the pinned LSM's) and SkipUnix.
	PinPath string
	// CheckReceived kills a sandboxed process that receives a socket,
	// other than a unix socket, created outside its sandbox (net_recv.go):
	// for a caller without BPF LSM programs, where nothing else checks such
	// a socket's connects and sends. Where the kernel cannot attach it,
	// Net still opens and ReceivedSockets says why.
	CheckReceived bool
}

// Net enforces egress policies with the cgroup sock_addr programs of
// bpf/sockaddr.c, attached to each sandbox cgroup.
type Net struct {
	objs netObjects

	// Standalone mode only: nil when another object owns the shared maps.
	table  *sandboxTable
	stream *eventStream

	pins *netPins // nil unless NetOptions.PinPath

	mu       sync.Mutex
	links    map[uint32][]link.Link // per policy id
	cgroups  map[uint32]uint64      // standalone: policy id -> sandbox cgroup id
	policies map[uint32]*netState

	// Unix sockets (net_unix.go): nil unix and the reason in unixErr when
	// this kernel or the options leave them unconfined.
	unix        *netUnix
	unixErr     error
	unixAllow   map[uint32]map[netUnixUnixAllowKey]uint32 // per policy id
	unixCgroups map[uint32]uint64                         // policy id -> attached sandbox cgroup id

	// Sockets passed in (net_recv.go): nil recv and the reason in recvErr
	// when this kernel or the options leave them unchecked.
	recv    *netRecv
	recvErr error
}

// OpenNet loads the sock_addr object. Nothing is enforced until a policy is
// set and the programs are attached to a sandbox cgroup.
func OpenNet(opts NetOptions) (*Net, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("load network programs: %w", err)
	}
	shared := 0
	for _, name := range []string{MapSandboxes, MapSandboxLevels, MapEvents, MapCounters} {
		if opts.MapReplacements[name] != nil {
			shared++
		}
	}
	if shared != 0 && shared != 4 {
		return nil, fmt.Errorf("load network programs: share all of %s, %s, %s and %s or none",
			MapSandboxes, MapSandboxLevels, MapEvents, MapCounters)
	}
	n := &Net{
		links:    map[uint32][]link.Link{},
		cgroups:  map[uint32]uint64{},
		policies: map[uint32]*netState{},

		unixAllow:   map[uint32]map[netUnixUnixAllowKey]uint32{},
		unixCgroups: map[uint32]uint64{},
	}
	spec, err := loadNet()
	if err != nil {
		return nil, fmt.Errorf("load network programs: %w", err)
	}
	copts := &ebpf.CollectionOptions{MapReplacements: opts.MapReplacements}
	if opts.PinPath != "" {
		if shared != 4 || !opts.SkipUnix {
			return nil, errors.New("load network programs: pinning needs the maps of the LSM object and SkipUnix")
		}
		if n.pins, err = openNetPins(opts.PinPath, spec, opts.MapReplacements); err != nil {
			return nil, fmt.Errorf("load network programs: %w", err)
		}
		copts.Maps.PinPath = opts.PinPath
	}
	if err := spec.LoadAndAssign(&n.objs, copts); err != nil {
		if n.pins != nil {
			n.pins.layout.Close()
		}
		return nil, fmt.Errorf("load network programs: %w", err)
	}
	if opts.SkipUnix {
		n.unixErr = fmt.Errorf("%w: left to the BPF LSM programs", errUnixDegraded)
	} else if n.unix, err = openUnix(&n.objs); errors.Is(err, errUnixDegraded) {
		n.unixErr = err
	} else if err != nil {
		n.objs.Close()
		return nil, fmt.Errorf("load network programs: %w", err)
	}
	if err := n.openRecv(opts.CheckReceived); err != nil {
		n.closeObjects()
		return nil, fmt.Errorf("load network programs: %w", err)
	}
	if n.pins != nil {
		if err := n.adoptPinned(); err != nil {
			// Close what was opened, leave every pin: the sandboxes stay
			// enforced by what is attached.
			for _, ls := range n.links {
				closeLinks(ls)
			}
			n.pins.layout.Close()
			n.closeObjects()
			return nil, err
		}
	}
	if shared == 0 {
		n.table = newSandboxTable(n.objs.Sandboxes, n.objs.SandboxLevels)
		n.stream, err = newEventStream(n.objs.Events, opts.Backend)
		if err != nil {
			n.closeObjects()
			return nil, err
		}
	}
	return n, nil
}

// errShared is returned by the standalone-only methods of a sharing Net.
var errShared = errors.New("the sandbox table, events and counters belong to the object whose maps this Net shares")

// AddSandbox enters a sandbox cgroup into the standalone sandbox table; its
// processes are then subject to policyID's rules (SetPolicy) once Attach has
// put the programs on the cgroup. A sharing Net refuses: the owner of the
// table adds sandboxes.
func (n *Net) AddSandbox(policyID uint32, g *cgroup.Group, audit bool) error {
	if n.table == nil {
		return fmt.Errorf("add sandbox %s: %w", g.Path, errShared)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.cgroups[policyID]; ok {
		return fmt.Errorf("add sandbox %s: policy id %d already has a sandbox", g.Path, policyID)
	}
	var flags uint32
	if audit {
		flags |= sandboxAudit
	}
	if err := n.table.add(g.ID, g.Level, policyID, flags); err != nil {
		return err
	}
	n.cgroups[policyID] = g.ID
	return nil
}

// Attach puts the programs on the sandbox cgroup at cgroupPath, for the
// sandbox with policyID. Sub-cgroups inherit them, so a cgroup a sandboxed
// process creates stays confined. Remove or Close detaches them.
func (n *Net) Attach(policyID uint32, cgroupPath string) error {
	g, err := cgroup.Open(cgroupPath)
	if err != nil {
		return fmt.Errorf("attach network programs: %w", err)
	}
	if g.Level < 1 {
		return fmt.Errorf("attach network programs to %s: refusing the root cgroup", cgroupPath)
	}
	progs := make([]struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}, len(netHooks))
	for i, h := range netHooks {
		progs[i].prog, progs[i].typ = h.prog(&n.objs), h.typ
	}
	if n.unix != nil {
		n.mu.Lock()
		err := n.unix.hold()
		if err == nil {
			// Held from here on: remove releases it with the last sandbox.
			n.unixCgroups[policyID] = g.ID
		}
		n.mu.Unlock()
		if err != nil {
			return fmt.Errorf("attach network programs to %s: %w", cgroupPath, err)
		}
		progs = append(progs, []struct {
			prog *ebpf.Program
			typ  ebpf.AttachType
		}{
			{n.unix.objs.AigateConnectUnix, ebpf.AttachCgroupUnixConnect},
			{n.unix.objs.AigateSendmsgUnix, ebpf.AttachCgroupUnixSendmsg},
		}...)
	}
	var links []link.Link
	for _, p := range progs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: p.typ, Program: p.prog})
		if err != nil {
			closeLinks(links)
			return fmt.Errorf("attach %s to %s: %w", p.typ, cgroupPath, err)
		}
		links = append(links, l)
	}
	if n.pins != nil {
		// Pinning needs SkipUnix: links holds exactly the netHooks.
		if err := n.pinLinks(policyID, netHooks, links); err != nil {
			closeLinks(links)
			return fmt.Errorf("attach network programs to %s: %w", cgroupPath, err)
		}
	}
	n.mu.Lock()
	n.links[policyID] = append(n.links[policyID], links...)
	n.mu.Unlock()
	return nil
}

func closeLinks(links []link.Link) error {
	var errs []error
	for _, l := range links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SetPolicy writes the egress policy of policyID: its mode, loopback
// setting, denied and allowed prefixes, and the addresses resolved for its
// allowed domains (resolved maps a DomainEntry.Name to its addresses; see
// egress.ResolveDomains). Calling it again replaces the policy, including any
// addresses added since with UpdateAddrs.
func (n *Net) SetPolicy(policyID uint32, np policy.NetPolicy, resolved map[string][]netip.Addr) error {
	if policyID == 0 {
		return errors.New("set network policy: policy id 0 is reserved")
	}
	var settings netNetSettings
	switch np.Mode {
	case policy.NetAllow:
		settings.Mode = netModeAllow
	case policy.NetDeny:
		settings.Mode = netModeDeny
	default:
		return fmt.Errorf("set network policy %d: unknown net mode %q", policyID, np.Mode)
	}
	switch np.Loopback {
	case policy.LoopbackAll:
		settings.Loopback = netLoopbackAll
	case policy.LoopbackOwn:
		settings.Loopback = netLoopbackOwn
	default:
		settings.Loopback = netLoopbackNone
	}
	if np.Inbound {
		settings.Inbound = 1
	}
	settings.DenyRule = uint32(np.DenyRule)
	settings.LoopbackRule = uint32(np.LoopbackRule)

	want := newNetState()
	for _, e := range np.Deny {
		want.claim(netEntry{prefix: e.Prefix, port: e.Port, deny: true}, netClaim{rule: e.Rule})
	}
	for _, e := range np.Allow {
		want.claim(netEntry{prefix: e.Prefix, port: e.Port}, netClaim{rule: e.Rule})
	}
	for _, d := range np.Domains {
		for _, a := range resolved[d.Name] {
			want.claim(netEntry{prefix: netip.PrefixFrom(a, a.BitLen()), port: d.Port}, netClaim{rule: d.Rule, domain: true})
		}
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	have := n.policies[policyID]
	if have == nil {
		have = newNetState()
	}
	// New entries first, then the settings that may start relying on them,
	// then the stale entries: no moment allows less than both old and new
	// policies agree on. Before the first settings are written the programs
	// refuse everything (fail closed).
	if err := n.sync(policyID, have, want, false); err != nil {
		return fmt.Errorf("set network policy %d: %w", policyID, err)
	}
	if err := n.objs.NetPolicies.Update(policyID, &settings, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set network policy %d: write settings: %w", policyID, err)
	}
	if err := n.sync(policyID, have, want, true); err != nil {
		return fmt.Errorf("set network policy %d: %w", policyID, err)
	}
	n.policies[policyID] = want
	if err := n.setUnixPolicy(policyID, np.Unix); err != nil {
		return fmt.Errorf("set network policy %d: %w", policyID, err)
	}
	return nil
}

// UpdateAddrs adds and removes addresses resolved for one allowed domain of
// policyID's policy (the DNS proxy calls it as answers arrive and expire).
// Claims are sets: adding an address twice for the same domain rule and
// removing it once removes it. An address stays allowed while another rule
// still allows it.
func (n *Net) UpdateAddrs(policyID uint32, d policy.DomainEntry, add, remove []netip.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	have := n.policies[policyID]
	if have == nil {
		return fmt.Errorf("update addresses of %s: policy %d has no network policy", d.Name, policyID)
	}
	want := have.clone()
	c := netClaim{rule: d.Rule, domain: true}
	for _, a := range add {
		want.claim(netEntry{prefix: netip.PrefixFrom(a, a.BitLen()), port: d.Port}, c)
	}
	for _, a := range remove {
		want.release(netEntry{prefix: netip.PrefixFrom(a, a.BitLen()), port: d.Port}, c)
	}
	err := errors.Join(n.sync(policyID, have, want, false), n.sync(policyID, have, want, true))
	if err != nil {
		// Keep what was written, so a later call retries the rest.
		n.policies[policyID] = have
		return fmt.Errorf("update addresses of %s: %w", d.Name, err)
	}
	n.policies[policyID] = want
	return nil
}

// sync writes (deletes false) or deletes (deletes true) the trie entries in
// which want differs from have, updating have as it goes.
func (n *Net) sync(policyID uint32, have, want *netState, deletes bool) error {
	var errs []error
	if !deletes {
		for e, claims := range want.entries {
			rule := minRule(claims)
			if old, ok := have.entries[e]; ok && minRule(old) == rule {
				have.entries[e] = claims
				continue
			}
			if err := n.writeEntry(policyID, e, rule); err != nil {
				errs = append(errs, err)
				continue
			}
			have.entries[e] = claims
		}
		return errors.Join(errs...)
	}
	for e := range have.entries {
		if _, ok := want.entries[e]; ok {
			continue
		}
		if err := n.deleteEntry(policyID, e); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(have.entries, e)
	}
	return errors.Join(errs...)
}

func (n *Net) trie(e netEntry) *ebpf.Map {
	switch {
	case e.deny && e.prefix.Addr().Is4():
		return n.objs.NetDeny4
	case e.deny:
		return n.objs.NetDeny6
	case e.prefix.Addr().Is4():
		return n.objs.NetAllow4
	}
	return n.objs.NetAllow6
}

func (n *Net) writeEntry(policyID uint32, e netEntry, rule policy.RuleID) error {
	if err := n.trie(e).Update(trieKey(policyID, e), netNetRule{RuleId: uint32(rule), Bits: uint32(e.prefix.Bits())}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write %s: %w", e, err)
	}
	return nil
}

func (n *Net) deleteEntry(policyID uint32, e netEntry) error {
	err := n.trie(e).Delete(trieKey(policyID, e))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete %s: %w", e, err)
	}
	return nil
}

func trieKey(policyID uint32, e netEntry) any {
	bits := uint32(netKeyBits + e.prefix.Bits())
	if e.prefix.Addr().Is4() {
		return netNetKey4{Prefixlen: bits, PolicyId: policyID, Port: uint32(e.port), Addr: e.prefix.Addr().As4()}
	}
	return netNetKey6{Prefixlen: bits, PolicyId: policyID, Port: uint32(e.port), Addr: e.prefix.Addr().As16()}
}

// LinkFDs returns the descriptors of the cgroup links attached for
// policyID, valid until Remove or Close. A process that holds duplicates of
// them keeps the programs attached after this one dies: the fanotify
// backend's guard does, until it has killed the sandbox. Links attached
// without bpf_link (older kernels) have no descriptor and stay attached
// until detached, so there is nothing to hold.
func (n *Net) LinkFDs(policyID uint32) []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var fds []int
	for _, l := range n.links[policyID] {
		if f, ok := l.(interface{ FD() int }); ok {
			fds = append(fds, f.FD())
		}
	}
	if _, ok := n.links[policyID]; ok && n.recv != nil {
		if fd := n.recv.linkFD(); fd >= 0 {
			fds = append(fds, fd)
		}
	}
	return fds
}

// Remove detaches the programs attached for policyID, deletes its entries
// and settings and, standalone, its sandbox. Removing an unknown id is a
// no-op.
func (n *Net) Remove(policyID uint32) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.remove(policyID)
}

func (n *Net) remove(policyID uint32) error {
	var errs []error
	// A pinned link stays attached when closed: unpinned first, it goes.
	if err := errors.Join(unpinLinks(n.links[policyID]), closeLinks(n.links[policyID])); err != nil {
		errs = append(errs, fmt.Errorf("detach: %w", err))
	}
	delete(n.links, policyID)
	if id, ok := n.cgroups[policyID]; ok {
		if err := n.table.remove(id); err != nil {
			errs = append(errs, err)
		}
		delete(n.cgroups, policyID)
	}
	if have := n.policies[policyID]; have != nil {
		if err := n.sync(policyID, have, newNetState(), true); err != nil {
			errs = append(errs, err)
		}
		delete(n.policies, policyID)
	}
	if err := n.objs.NetPolicies.Delete(policyID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("delete settings: %w", err))
	}
	if err := n.removeDNS(policyID); err != nil {
		errs = append(errs, err)
	}
	if err := n.removeUnix(policyID); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove network policy %d: %w", policyID, err)
	}
	return nil
}

// Events delivers the denials of a standalone Net until Close; nil when the
// events go to the ring buffer of the object whose maps it shares.
func (n *Net) Events() <-chan events.Event {
	if n.stream == nil {
		return nil
	}
	return n.stream.Events()
}

// Flush implements enforce.Flusher for a standalone Net; one that shares
// another object's ring buffer has no events of its own (0).
func (n *Net) Flush(ctx context.Context) (uint64, error) {
	if n.stream == nil {
		return 0, nil
	}
	return n.stream.flush(ctx)
}

// Stats reads the exact counters of a standalone Net.
func (n *Net) Stats() (enforce.Stats, error) {
	if n.table == nil {
		return enforce.Stats{}, fmt.Errorf("read network counters: %w", errShared)
	}
	return readCounters(n.objs.Counters)
}

// Close detaches every program, removes every policy and sandbox it added
// and releases the object.
func (n *Net) Close() error {
	n.mu.Lock()
	var errs []error
	for id := range n.links {
		if err := n.remove(id); err != nil {
			errs = append(errs, err)
		}
	}
	for id := range n.policies {
		if err := n.remove(id); err != nil {
			errs = append(errs, err)
		}
	}
	n.mu.Unlock()
	if n.stream != nil {
		if err := n.stream.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.pins != nil {
		if err := n.unpinAll(); err != nil {
			errs = append(errs, err)
		}
		n.pins.layout.Close()
	}
	if err := n.closeObjects(); err != nil {
		errs = append(errs, fmt.Errorf("close network programs: %w", err))
	}
	return errors.Join(errs...)
}

func (n *Net) closeObjects() error {
	var err, rerr error
	if n.unix != nil {
		err = n.unix.close()
	}
	if n.recv != nil {
		rerr = n.recv.close()
	}
	return errors.Join(err, rerr, n.objs.Close())
}
