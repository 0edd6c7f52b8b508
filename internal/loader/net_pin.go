//go:build linux

package loader

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/aigate-dev/aigate/internal/policy"
)

// Pinned state of the network object, under NetOptions.PinPath (the LSM's
// pin directory's "net" subdirectory, see docs/lsm.md):
//
//	layout             array map, one u64: this object's map layout hash
//	<map name>         every map of sockaddr.c that is not shared with the
//	                   LSM object (net_policies, the four tries, dns_proxies,
//	                   dns_proxy_ports, addr_use, addr_use_policies,
//	                   sock_states, ide_ports)
//	<policy id>_<hook> the cgroup link of one program on one sandbox
//
// The shared maps (sandbox table, ring buffer, counters) are the LSM's and
// pinned by it. A pinned cgroup link keeps its program attached to the
// sandbox cgroup with no process holding it, so the sandbox's egress
// policy holds while no agent runs.
const netLayoutVersion = 1

// netHook is one sock_addr program and where it attaches.
type netHook struct {
	name string
	typ  ebpf.AttachType
	prog func(*netObjects) *ebpf.Program
}

// netHooks are the programs Attach puts on every sandbox cgroup, by the
// name their link pins carry.
var netHooks = []netHook{
	{"connect4", ebpf.AttachCGroupInet4Connect, func(o *netObjects) *ebpf.Program { return o.AigateConnect4 }},
	{"connect6", ebpf.AttachCGroupInet6Connect, func(o *netObjects) *ebpf.Program { return o.AigateConnect6 }},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(o *netObjects) *ebpf.Program { return o.AigateSendmsg4 }},
	{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(o *netObjects) *ebpf.Program { return o.AigateSendmsg6 }},
	{"recvmsg4", ebpf.AttachCGroupUDP4Recvmsg, func(o *netObjects) *ebpf.Program { return o.AigateRecvmsg4 }},
	{"recvmsg6", ebpf.AttachCGroupUDP6Recvmsg, func(o *netObjects) *ebpf.Program { return o.AigateRecvmsg6 }},
	{"sock_create", ebpf.AttachCGroupInetSockCreate, func(o *netObjects) *ebpf.Program { return o.AigateSockCreate }},
	{"sock_release", ebpf.AttachCgroupInetSockRelease, func(o *netObjects) *ebpf.Program { return o.AigateSockRelease }},
	{"ingress", ebpf.AttachCGroupInetIngress, func(o *netObjects) *ebpf.Program { return o.AigateIngress }},
}

func netHookByName(name string) (netHook, bool) {
	for _, h := range netHooks {
		if h.name == name {
			return h, true
		}
	}
	return netHook{}, false
}

// netPins is the pinned state of a Net opened with a PinPath.
type netPins struct {
	dir    string
	layout *ebpf.Map
	// adopted is what was found pinned at open, by policy id, until
	// TakeAdopted hands it over.
	adopted []AdoptedNet
}

// AdoptedNet is what a previous process left pinned for one policy id:
// the links of its sandbox cgroup (switched to this load's programs) and
// the trie entries written, each with the rule the trie reports. Whether
// an address was learned for a domain is not kept, so the first policy
// written after adoption replaces every entry that its policy does not
// name, learned addresses included.
type AdoptedNet struct {
	ID      uint32
	Links   *NetLinks
	Entries map[NetEntry]policy.RuleID
}

func netPinnedMap(name string, replaced map[string]*ebpf.Map) bool {
	return replaced[name] == nil && !strings.HasPrefix(name, ".")
}

// netLayoutHash identifies the shape of every pinned map of the object.
func netLayoutHash(spec *ebpf.CollectionSpec, replaced map[string]*ebpf.Map) uint64 {
	names := make([]string, 0, len(spec.Maps))
	for n := range spec.Maps {
		if netPinnedMap(n, replaced) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	h := sha256.New()
	fmt.Fprintf(h, "aigate-net-layout %d\n", netLayoutVersion)
	for _, n := range names {
		m := spec.Maps[n]
		fmt.Fprintf(h, "%s %d %d %d %d %d\n", n, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags)
	}
	return binary.LittleEndian.Uint64(h.Sum(nil))
}

// openNetPins checks or writes the layout stamp in dir and marks the maps
// of spec that are not replaced for pinning there. A directory of another
// layout is refused with ErrPinLayout: its maps cannot serve these programs.
func openNetPins(dir string, spec *ebpf.CollectionSpec, replaced map[string]*ebpf.Map) (_ *netPins, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pin directory: %w", err)
	}
	want := netLayoutHash(spec, replaced)
	p := &netPins{dir: dir}
	defer func() {
		if err != nil && p.layout != nil {
			p.layout.Close()
		}
	}()
	path := filepath.Join(dir, pinLayout)
	p.layout, err = ebpf.LoadPinnedMap(path, nil)
	switch {
	case err == nil:
		var got uint64
		if err := p.layout.Lookup(uint32(0), &got); err != nil {
			return nil, fmt.Errorf("read pinned network layout: %w", err)
		}
		if got != want {
			return nil, fmt.Errorf("%w: %s was written by another aigate version (network layout %016x, this one %016x); end the running sandboxes and run `sudo aigate reset --force`", ErrPinLayout, dir, got, want)
		}
	case errors.Is(err, os.ErrNotExist):
		for n := range spec.Maps {
			if _, err := os.Lstat(filepath.Join(dir, n)); err == nil && netPinnedMap(n, replaced) {
				return nil, fmt.Errorf("%w: %s holds map %s but no layout stamp; run `sudo aigate reset --force`", ErrPinLayout, dir, n)
			}
		}
		p.layout, err = ebpf.NewMap(&ebpf.MapSpec{Name: "aigate_netlay", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
		if err != nil {
			return nil, fmt.Errorf("create network layout map: %w", err)
		}
		if err := p.layout.Update(uint32(0), want, ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("write network layout map: %w", err)
		}
		if err := p.layout.Pin(path); err != nil {
			return nil, fmt.Errorf("pin network layout map: %w", err)
		}
	default:
		return nil, fmt.Errorf("open pinned network layout: %w", err)
	}
	for n, m := range spec.Maps {
		if netPinnedMap(n, replaced) {
			m.Pinning = ebpf.PinByName
		}
	}
	return p, nil
}

func linkPinName(policyID uint32, hook string) string {
	return strconv.FormatUint(uint64(policyID), 10) + "_" + hook
}

// parseLinkPin is the inverse of linkPinName.
func parseLinkPin(name string) (uint32, netHook, bool) {
	idStr, hook, ok := strings.Cut(name, "_")
	if !ok {
		return 0, netHook{}, false
	}
	id, err := strconv.ParseUint(idStr, 10, 32)
	if err != nil || id == 0 {
		return 0, netHook{}, false
	}
	h, ok := netHookByName(hook)
	return uint32(id), h, ok
}

// adoptPinned takes over what a previous process pinned: each sandbox's
// cgroup links, switched to this load's programs (BPF_LINK_UPDATE swaps
// the program atomically: the cgroup is never without one), and each
// policy's trie entries, for TakeAdopted. Called from OpenNet, before
// anyone else holds n.
func (n *Net) adoptPinned() error {
	ents, err := os.ReadDir(n.pins.dir)
	if err != nil {
		return fmt.Errorf("list pinned network state: %w", err)
	}
	var errs []error
	byID := map[uint32]*AdoptedNet{}
	get := func(id uint32) *AdoptedNet {
		a := byID[id]
		if a == nil {
			a = &AdoptedNet{ID: id, Links: &NetLinks{}, Entries: map[NetEntry]policy.RuleID{}}
			byID[id] = a
		}
		return a
	}
	for _, e := range ents {
		id, h, ok := parseLinkPin(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(n.pins.dir, e.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("open pinned link %s: %w", path, err))
			continue
		}
		if err := l.Update(h.prog(&n.objs)); err != nil {
			// The old program stays attached and enforcing; Detach still
			// finds the link by its pin.
			errs = append(errs, fmt.Errorf("update pinned link %s: %w", path, err))
		}
		a := get(id)
		a.Links.links = append(a.Links.links, l)
	}
	var (
		id uint32
		s  netNetSettings
	)
	it := n.objs.NetPolicies.Iterate()
	for it.Next(&id, &s) {
		get(id)
	}
	if err := it.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read pinned network policies: %w", err))
	}
	if err := n.collectEntries(get); err != nil {
		errs = append(errs, err)
	}
	for _, a := range byID {
		// The Landlock refusals of an adopted sandbox are reported too;
		// without the program attached they are not (nothing else).
		if h := n.exitHook(); h != nil && h.hold() == nil {
			a.Links.exit = h
		}
		n.pins.adopted = append(n.pins.adopted, *a)
	}
	sort.Slice(n.pins.adopted, func(i, j int) bool { return n.pins.adopted[i].ID < n.pins.adopted[j].ID })
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("adopt pinned network state: %w", err)
	}
	return nil
}

// collectEntries reads the tries into the adopted policies.
func (n *Net) collectEntries(get func(uint32) *AdoptedNet) error {
	var errs []error
	var (
		k4 netNetKey4
		k6 netNetKey6
		v  netNetRule
	)
	for _, deny := range []bool{false, true} {
		m4, m6 := n.objs.NetAllow4, n.objs.NetAllow6
		if deny {
			m4, m6 = n.objs.NetDeny4, n.objs.NetDeny6
		}
		it := m4.Iterate()
		for it.Next(&k4, &v) {
			p := netip.PrefixFrom(netip.AddrFrom4(k4.Addr), int(k4.Prefixlen)-netKeyBits)
			get(k4.PolicyId).Entries[NetEntry{Prefix: p, Port: uint16(k4.Port), Deny: deny}] = policy.RuleID(v.RuleId)
		}
		if err := it.Err(); err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", m4, err))
		}
		it = m6.Iterate()
		for it.Next(&k6, &v) {
			p := netip.PrefixFrom(netip.AddrFrom16(k6.Addr), int(k6.Prefixlen)-netKeyBits)
			get(k6.PolicyId).Entries[NetEntry{Prefix: p, Port: uint16(k6.Port), Deny: deny}] = policy.RuleID(v.RuleId)
		}
		if err := it.Err(); err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", m6, err))
		}
	}
	return errors.Join(errs...)
}

// TakeAdopted hands over what was found pinned when the Net was opened
// (links, settings or trie entries), by policy id, sorted; later calls
// return nothing. The caller keeps those of live sandboxes (writes their
// recompiled policy, steers their DNS again) and removes the others
// (Detach, DeleteEntry, RemovePolicy). Call it before n is shared (egress
// does, in New): it is the one method that changes n itself.
func (n *Net) TakeAdopted() []AdoptedNet {
	if n.pins == nil {
		return nil
	}
	a := n.pins.adopted
	n.pins.adopted = nil
	return a
}

// PinDir is the directory of the Net's pins, "" when it pins nothing.
func (n *Net) PinDir() string {
	if n.pins == nil {
		return ""
	}
	return n.pins.dir
}

// pinLinks pins the links just attached for policyID (caller: Attach).
func (n *Net) pinLinks(policyID uint32, hooks []netHook, links []link.Link) error {
	for i, l := range links {
		path := filepath.Join(n.pins.dir, linkPinName(policyID, hooks[i].name))
		if err := l.Pin(path); err != nil {
			for _, p := range links[:i] {
				_ = p.Unpin()
			}
			return fmt.Errorf("pin link %s: %w", path, err)
		}
	}
	return nil
}

// Release closes every descriptor of the Net and leaves its pins: the
// programs stay attached to the sandbox cgroups and enforce the policies
// written, with no process holding them (see Close for the opposite). The
// caller closes the sandboxes' links (NetLinks.Close) the same way.
// Steering DNS to a proxy that has gone makes the sandbox's DNS fail,
// until a new process adopts it and steers it to a new proxy.
func (n *Net) Release() error {
	if n.pins == nil {
		return errors.New("release network programs: nothing is pinned (no PinPath)")
	}
	var errs []error
	for _, a := range n.TakeAdopted() {
		errs = append(errs, a.Links.Close()) // never taken: pinned, stays attached
	}
	if n.stream != nil {
		errs = append(errs, n.stream.close())
	}
	n.pins.layout.Close()
	errs = append(errs, n.closeObjects())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release network programs: %w", err)
	}
	return nil
}

// unpinLinks removes the pins of the pinned links among links.
func unpinLinks(links []link.Link) error {
	var errs []error
	for _, l := range links {
		if p, ok := l.(interface{ IsPinned() bool }); ok && p.IsPinned() {
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin link: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// unpinAll removes the Net's map pins and its directory (Close, after
// every policy and its link pins are gone).
func (n *Net) unpinAll() error {
	var errs []error
	for _, m := range []*ebpf.Map{
		n.objs.NetPolicies, n.objs.NetAllow4, n.objs.NetAllow6, n.objs.NetDeny4, n.objs.NetDeny6,
		n.objs.DnsProxies, n.objs.DnsProxyPorts, n.objs.AddrUse, n.objs.AddrUsePolicies, n.objs.SockStates, n.objs.IdePorts, n.pins.layout,
	} {
		if m == nil || !m.IsPinned() {
			continue
		}
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", m, err))
		}
	}
	if err := os.Remove(n.pins.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove pin directory: %w", err))
	}
	return errors.Join(errs...)
}
