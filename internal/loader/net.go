//go:build linux

package loader

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

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
	// outlive the process: Release leaves them, Detach and Close remove
	// them, and the next OpenNet with the same PinPath adopts them
	// (TakeAdopted). It
	// needs the shared maps (they are the pinned LSM's) and SkipUnix.
	PinPath string
	// CheckReceived kills a sandboxed process that receives a socket,
	// other than a unix socket, created outside its sandbox (net_recv.go):
	// for a caller without BPF LSM programs, where nothing else checks such
	// a socket's connects and sends. Where the kernel cannot attach it,
	// Net still opens and ReceivedSockets says why.
	CheckReceived bool
	// Keep keeps the standalone object loaded between processes: pinned
	// under KeptRoot (net_kept.go), adopted by the next OpenNet with Keep
	// of a binary with the same objects, so that the kernel verifies its
	// programs once rather than once per run. Nothing of a sandbox is
	// kept: the maps are emptied when adopted, and each sandbox's entries
	// are removed when it ends. A set that cannot be used (another Net
	// holds it, a directory not root's, pins not exactly these objects)
	// is not used: the object is loaded afresh (KeptStatus says why).
	Keep bool
	// KeepLive says whether the cgroup a kept sandbox table names still
	// exists. A set whose table names a live cgroup (a run killed before
	// its sandbox ended) is left as it is, and this Net loads afresh. Nil
	// counts every entry as live.
	KeepLive func(cgroupID uint64) bool
}

// Net is the cgroup sock_addr object of bpf/sockaddr.c: it attaches the
// programs to a sandbox cgroup and writes the policy maps they read. It
// keeps nothing per sandbox: what was written and attached for each one is
// the caller's (internal/egress), which passes it back to change or
// remove it.
type Net struct {
	objs netObjects

	// Standalone mode only: nil when another object owns the shared maps.
	table  *sandboxTable
	stream *eventStream

	pins *netPins // nil unless NetOptions.PinPath

	// NetOptions.Keep: the set in use (nil when none), whether this Net
	// adopted it or pinned it afresh, and why a set was not used.
	kept        *keptSet
	keptAdopted bool
	keptErr     error

	// Unix sockets (net_unix.go): nil unix and the reason in unixErr when
	// this kernel or the options leave them unconfined.
	unix    *netUnix
	unixErr error

	// The Landlock refusal reporter where unix is nil (net_exit.go): nil
	// and the reason in refusedErr when it could not be loaded.
	refused    *netRefused
	refusedErr error

	// Sockets passed in (net_recv.go): nil recv and the reason in recvErr
	// when this kernel or the options leave them unchecked.
	recv    *netRecv
	recvErr error
}

// NetEntry is one trie entry: a prefix for one port (0: any) in the allow
// or the deny trie of a policy.
type NetEntry struct {
	Prefix netip.Prefix // masked; IPv4 never in the 4-in-6 form
	Port   uint16
	Deny   bool
}

func (e NetEntry) String() string {
	kind := "allow"
	if e.Deny {
		kind = "deny"
	}
	if e.Port == 0 {
		return fmt.Sprintf("%s %s", kind, e.Prefix)
	}
	return fmt.Sprintf("%s %s port %d", kind, e.Prefix, e.Port)
}

// NetLinks are the cgroup links of one sandbox: made by Attach, or found
// pinned by OpenNet (AdoptedNet). Detach removes them.
type NetLinks struct {
	links []link.Link
	exit  *exitHook // the sys_exit program it holds a reference on, or nil
	recv  *netRecv  // the receive check, whose link the guard holds too
}

// FDs returns the descriptors of the links, valid until Detach or Close.
// A process that holds duplicates of them keeps the programs attached
// after this one dies: the fanotify backend's guard does, until it has
// killed the sandbox. Links attached without bpf_link (older kernels) have
// no descriptor and stay attached until detached, so there is nothing to
// hold.
func (l *NetLinks) FDs() []int {
	if l == nil {
		return nil
	}
	var fds []int
	for _, k := range l.links {
		if f, ok := k.(interface{ FD() int }); ok {
			fds = append(fds, f.FD())
		}
	}
	if l.recv != nil {
		if fd := l.recv.linkFD(); fd >= 0 {
			fds = append(fds, fd)
		}
	}
	return fds
}

// Close closes the descriptors and leaves the pins: pinned links stay
// attached with no process holding them (Release), others are detached.
func (l *NetLinks) Close() error {
	if l == nil {
		return nil
	}
	return closeLinks(l.links)
}

// OpenNet loads the sock_addr object. Nothing is enforced until a policy is
// set and the programs are attached to a sandbox cgroup.
func OpenNet(opts NetOptions) (*Net, error) {
	if err := removeMemlock(); err != nil {
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
	n := &Net{}
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
	if opts.Keep {
		if shared != 0 || opts.PinPath != "" {
			return nil, errors.New("load network programs: only a standalone, unpinned object is kept")
		}
		n.kept, n.keptErr = openKeptSet()
	}
	if err := n.loadObjects(spec, copts, opts.KeepLive); err != nil {
		if n.pins != nil {
			n.pins.layout.Close()
		}
		return nil, fmt.Errorf("load network programs: %w", err)
	}
	if opts.SkipUnix {
		n.unixErr = fmt.Errorf("%w: left to the BPF LSM programs", errUnixDegraded)
	} else if n.unix, err = openUnix(&n.objs, n.kept); errors.Is(err, errUnixDegraded) {
		n.unixErr = err
	} else if err != nil {
		n.objs.Close()
		return nil, fmt.Errorf("load network programs: %w", err)
	}
	if n.unix == nil {
		// Without it the sandboxes' Landlock refusals go unreported
		// (RefusalsReported says why); the rest works.
		n.refused, n.refusedErr = openRefused(&n.objs)
	}
	if err := n.openRecv(opts.CheckReceived); err != nil {
		n.closeObjects()
		return nil, fmt.Errorf("load network programs: %w", err)
	}
	if n.pins != nil {
		if err := n.adoptPinned(); err != nil {
			// Close what was opened, leave every pin: the sandboxes stay
			// enforced by what is attached.
			for _, a := range n.pins.adopted {
				a.Links.Close()
			}
			n.pins.layout.Close()
			n.closeObjects()
			return nil, err
		}
	}
	if err := n.settleKept(); err != nil {
		n.closeObjects()
		return nil, fmt.Errorf("load network programs: %w", err)
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
// processes are then subject to policyID's rules (WriteSettings,
// WriteEntry) once Attach has put the programs on the cgroup. A sharing Net
// refuses: the owner of the table adds sandboxes.
func (n *Net) AddSandbox(policyID uint32, g *cgroup.Group, audit bool) error {
	if n.table == nil {
		return fmt.Errorf("add sandbox %s: %w", g.Path, errShared)
	}
	var flags uint32
	if audit {
		flags |= sandboxAudit
	}
	return n.table.add(g.ID, g.Level, policyID, flags)
}

// RemoveSandbox takes a cgroup out of the standalone sandbox table;
// removing one that is not there is a no-op.
func (n *Net) RemoveSandbox(cgroupID uint64) error {
	if n.table == nil {
		return fmt.Errorf("remove sandbox cgroup %d: %w", cgroupID, errShared)
	}
	return n.table.remove(cgroupID)
}

// Attach puts the programs on the sandbox cgroup at cgroupPath, for the
// sandbox with policyID. Sub-cgroups inherit them, so a cgroup a sandboxed
// process creates stays confined. Detach removes them.
func (n *Net) Attach(policyID uint32, cgroupPath string) (*NetLinks, error) {
	g, err := cgroup.Open(cgroupPath)
	if err != nil {
		return nil, fmt.Errorf("attach network programs: %w", err)
	}
	if g.Level < 1 {
		return nil, fmt.Errorf("attach network programs to %s: refusing the root cgroup", cgroupPath)
	}
	progs := make([]struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}, len(netHooks))
	for i, h := range netHooks {
		progs[i].prog, progs[i].typ = h.prog(&n.objs), h.typ
	}
	nl := &NetLinks{recv: n.recv}
	if h := n.exitHook(); h != nil {
		// Held from here on: Detach releases it.
		if err := h.hold(); err != nil {
			return nil, fmt.Errorf("attach network programs to %s: %w", cgroupPath, err)
		}
		nl.exit = h
	}
	if n.unix != nil {
		progs = append(progs, []struct {
			prog *ebpf.Program
			typ  ebpf.AttachType
		}{
			{n.unix.objs.AigateConnectUnix, ebpf.AttachCgroupUnixConnect},
			{n.unix.objs.AigateSendmsgUnix, ebpf.AttachCgroupUnixSendmsg},
		}...)
	}
	for _, p := range progs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: p.typ, Program: p.prog})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("attach %s to %s: %w", p.typ, cgroupPath, err), n.Detach(nl))
		}
		nl.links = append(nl.links, l)
	}
	if n.pins != nil {
		// Pinning needs SkipUnix: the links are exactly the netHooks.
		if err := n.pinLinks(policyID, netHooks, nl.links); err != nil {
			return nil, errors.Join(fmt.Errorf("attach network programs to %s: %w", cgroupPath, err), n.Detach(nl))
		}
	}
	return nl, nil
}

// Detach removes the links of one sandbox (Attach, or adopted from pins):
// the programs leave its cgroup.
func (n *Net) Detach(l *NetLinks) error {
	if l == nil {
		return nil
	}
	// A pinned link stays attached when closed: unpinned first, it goes.
	err := errors.Join(unpinLinks(l.links), closeLinks(l.links))
	l.links = nil
	if l.exit != nil {
		err = errors.Join(err, l.exit.release())
		l.exit = nil
	}
	if err != nil {
		return fmt.Errorf("detach network programs: %w", err)
	}
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

// WriteSettings writes the settings of policyID's egress policy: its mode,
// loopback setting, inbound rule and the rules its refusals report. Until
// they are written the programs refuse everything of the policy (fail
// closed); the trie entries (WriteEntry) are the rest of the policy.
func (n *Net) WriteSettings(policyID uint32, np policy.NetPolicy) error {
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
	if err := n.objs.NetPolicies.Update(policyID, &settings, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set network policy %d: write settings: %w", policyID, err)
	}
	return nil
}

func (n *Net) trie(e NetEntry) *ebpf.Map {
	switch {
	case e.Deny && e.Prefix.Addr().Is4():
		return n.objs.NetDeny4
	case e.Deny:
		return n.objs.NetDeny6
	case e.Prefix.Addr().Is4():
		return n.objs.NetAllow4
	}
	return n.objs.NetAllow6
}

// WriteEntry writes one trie entry of policyID: a destination the policy
// allows or denies, and the rule a connection it decides reports.
func (n *Net) WriteEntry(policyID uint32, e NetEntry, rule policy.RuleID) error {
	if err := n.trie(e).Update(trieKey(policyID, e), netNetRule{RuleId: uint32(rule), Bits: uint32(e.Prefix.Bits())}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write %s: %w", e, err)
	}
	return nil
}

// DeleteEntry deletes one trie entry of policyID; an absent one is no error.
func (n *Net) DeleteEntry(policyID uint32, e NetEntry) error {
	err := n.trie(e).Delete(trieKey(policyID, e))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete %s: %w", e, err)
	}
	return nil
}

func trieKey(policyID uint32, e NetEntry) any {
	bits := uint32(netKeyBits + e.Prefix.Bits())
	if e.Prefix.Addr().Is4() {
		return netNetKey4{Prefixlen: bits, PolicyId: policyID, Port: uint32(e.Port), Addr: e.Prefix.Addr().As4()}
	}
	return netNetKey6{Prefixlen: bits, PolicyId: policyID, Port: uint32(e.Port), Addr: e.Prefix.Addr().As16()}
}

// RemovePolicy deletes what is kept of policyID by policy id alone: its
// settings, DNS steering and use counts, the allow_unix entries unix (as
// WriteUnixAllow returned them), the unix socket names learned in its
// sandbox cgroup and the IDE lock ports guarded for it (GuardIDEPort).
// The trie entries are the caller's to delete (DeleteEntry): only it
// knows which it wrote.
func (n *Net) RemovePolicy(policyID uint32, unix UnixAllow, cgroupID uint64) error {
	var errs []error
	if err := n.objs.NetPolicies.Delete(policyID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("delete settings: %w", err))
	}
	if err := n.removeDNS(policyID); err != nil {
		errs = append(errs, err)
	}
	if err := n.removeUnix(unix, cgroupID); err != nil {
		errs = append(errs, err)
	}
	if err := n.removeIDEPorts(cgroupID); err != nil {
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

// Close releases the object and, when it pins, removes its map pins and
// directory. The caller has detached (Detach) and removed (RemovePolicy)
// every sandbox first: Close does not know them.
func (n *Net) Close() error {
	var errs []error
	for _, a := range n.TakeAdopted() {
		// Found pinned and never taken over: removed like any other.
		errs = append(errs, n.Detach(a.Links))
		for e := range a.Entries {
			errs = append(errs, n.DeleteEntry(a.ID, e))
		}
		errs = append(errs, n.RemovePolicy(a.ID, nil, 0))
	}
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
	if n.refused != nil {
		err = errors.Join(err, n.refused.close())
	}
	return errors.Join(err, rerr, n.objs.Close(), n.kept.close())
}

// exitHook is the sys_exit program a sandbox holds while attached: the
// unix-socket object's, else the Landlock refusal reporter; nil when
// neither is loaded.
func (n *Net) exitHook() *exitHook {
	switch {
	case n.unix != nil:
		return &n.unix.exit
	case n.refused != nil:
		return &n.refused.exit
	}
	return nil
}

// RefusalsReported says whether the calls of sandboxed tasks that
// Landlock may have refused reach the event stream (bpf/include/refused.h):
// nil when they do, else why not.
func (n *Net) RefusalsReported() error {
	if n.exitHook() != nil {
		return nil
	}
	return n.refusedErr
}
