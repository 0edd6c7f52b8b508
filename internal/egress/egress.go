//go:build linux

package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/dns"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Options configure New. Zero values take the defaults.
type Options struct {
	// Upstreams are the resolvers ("host:port") the DNS proxies forward
	// to; nil reads /etc/resolv.conf at each Add.
	Upstreams []string
	// Resolver resolves allowed domains in ModeResolve; nil is the
	// system resolver of the aigate process (outside every sandbox).
	Resolver Resolver
	// ResolveEvery is how often ModeResolve resolves the domains again
	// (default 60s).
	ResolveEvery time.Duration
	// Logger receives the fallbacks to ModeResolve and failed re-resolves.
	Logger *zap.Logger
	// EventBuffer is the capacity of the Events channel (default 256).
	EventBuffer int
}

// DefaultResolveEvery is ResolveEvery's default: CDN answers commonly live
// a few minutes, so a minute keeps up without loading the resolver.
const DefaultResolveEvery = 60 * time.Second

// proxyAddr4 and proxyAddr6 are where every proxy listens (dns.Start's
// defaults): the proxy runs in aigate, in the host's network namespace.
var (
	proxyAddr4 = netip.MustParseAddr("127.0.0.1")
	proxyAddr6 = netip.IPv6Loopback()
)

// rules is what Egress needs of *loader.Net, a writer of maps and maker
// of links that keeps nothing per sandbox; tests substitute it.
type rules interface {
	AddSandbox(policyID uint32, g *cgroup.Group, audit bool) error
	RemoveSandbox(cgroupID uint64) error
	Attach(policyID uint32, cgroupPath string) (*loader.NetLinks, error)
	Detach(*loader.NetLinks) error
	WriteSettings(policyID uint32, np policy.NetPolicy) error
	WriteEntry(policyID uint32, e loader.NetEntry, rule policy.RuleID) error
	DeleteEntry(policyID uint32, e loader.NetEntry) error
	WriteUnixAllow(policyID uint32, have loader.UnixAllow, fs policy.FileSet) (loader.UnixAllow, error)
	SetDNSProxy(policyID uint32, ip4, ip6 netip.Addr, port uint16) error
	ClearDNSProxy(policyID uint32) error
	AddrInUse(policyID uint32, addr netip.Addr) (bool, error)
	RemovePolicy(policyID uint32, unix loader.UnixAllow, cgroupID uint64) error
	GuardIDEPort(cgroupID uint64, port uint16) error
	Events() <-chan events.Event
	Stats() (enforce.Stats, error)
	Close() error
	// Pinning (loader.Net opened with a PinPath; PinDir is "" and
	// TakeAdopted nil otherwise).
	PinDir() string
	TakeAdopted() []loader.AdoptedNet
	Release() error
}

// proxy is what Egress needs of *dns.Proxy.
type proxy interface {
	Port() uint16
	DomainOf(netip.Addr) string
	Stats() dns.Stats
	Close() error
}

// Egress enforces the network policies of sandboxes: one place attaches
// the sock_addr programs and runs the DNS proxies, for either backend.
type Egress struct {
	net        rules
	standalone bool // net owns its sandbox table, ring buffer and counters
	opts       Options
	log        *zap.Logger
	start      func(dns.Config) (proxy, error)

	mu        sync.Mutex
	sandboxes map[uint32]*sandbox
	closed    bool
	pinned    map[uint32]*written // found pinned at New, until Claim or Remove
	released  atomic.Bool         // Release began: the proxies no longer touch the maps

	refused [2]atomic.Uint64 // names the proxies refused, [audit]
	dropped atomic.Uint64    // events that did not fit in out
	sent    atomic.Uint64    // events handed to out, for Flush
	taken   atomic.Uint64    // events forward has taken from the Net, for Flush

	outMu     sync.RWMutex // guards sends on out against its close
	out       chan events.Event
	outClosed bool
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// sandbox is one added sandbox and how its domains are kept.
type sandbox struct {
	sb     *enforce.Sandbox
	audit  bool
	ready  bool // Add finished (under Egress.mu); until then only Add touches it
	mode   Mode
	reason string // why ModeResolve, not ModeProxy
	proxy  proxy

	stop     context.CancelFunc // of the re-resolve loop
	loopDone chan struct{}

	mu       sync.Mutex
	resolved map[string][]netip.Addr // ModeResolve: last addresses per name
	lastErr  error                   // ModeResolve: of the last round

	w written // what the Net holds for this sandbox
}

// New returns the egress component over n, which it owns from then on
// (Close closes it). n is either standalone (beside fanotify: Egress adds
// sandboxes to its table and forwards its events and counters) or shares
// the LSM object's maps (loader.NetOptions.MapReplacements: the LSM adds
// the sandboxes and delivers the kernel's network events and counters).
func New(n *loader.Net, opts Options) *Egress {
	return newEgress(n, opts)
}

func newEgress(n rules, opts Options) *Egress {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.ResolveEvery <= 0 {
		opts.ResolveEvery = DefaultResolveEvery
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 256
	}
	e := &Egress{
		net:       n,
		opts:      opts,
		log:       opts.Logger,
		start:     func(c dns.Config) (proxy, error) { return dns.Start(c) },
		sandboxes: map[uint32]*sandbox{},
		pinned:    map[uint32]*written{},
		out:       make(chan events.Event, opts.EventBuffer),
	}
	for _, a := range n.TakeAdopted() {
		e.pinned[a.ID] = &written{links: a.Links, rules: adoptedState(a.Entries)}
	}
	if in := n.Events(); in != nil {
		e.standalone = true
		e.wg.Add(1)
		go e.forward(in)
	}
	return e
}

// forward passes the standalone Net's events on; it ends when Close
// closes the Net.
func (e *Egress) forward(in <-chan events.Event) {
	defer e.wg.Done()
	for ev := range in {
		e.emit(ev)
		e.taken.Add(1)
	}
}

// DomainOf implements enforce.DomainNamer: the name the DNS proxy of the
// sandbox in cgroup cgroupID last resolved to addr, or "" (no proxy, or
// an address it never answered).
func (e *Egress) DomainOf(cgroupID uint64, addr netip.Addr) string {
	e.mu.Lock()
	var p proxy
	for _, s := range e.sandboxes {
		if s.sb.CgroupID == cgroupID && s.ready {
			p = s.proxy
			break
		}
	}
	e.mu.Unlock()
	if p == nil {
		return ""
	}
	return p.DomainOf(addr.Unmap())
}

// Flush implements enforce.Flusher. A refusal of the DNS proxies is
// emitted before its answer is sent, so only the standalone Net's ring
// buffer can hold events still to come.
func (e *Egress) Flush(ctx context.Context) (uint64, error) {
	if f, ok := e.net.(enforce.Flusher); ok && e.standalone {
		n, err := f.Flush(ctx)
		if err != nil {
			return 0, err
		}
		if err := enforce.AwaitCount(ctx, e.taken.Load, n); err != nil {
			return 0, fmt.Errorf("flush network events: %w", err)
		}
	}
	return e.sent.Load(), nil
}

// emit never blocks: a full channel drops the event, and the exact
// counters still count it.
func (e *Egress) emit(ev events.Event) {
	e.outMu.RLock()
	defer e.outMu.RUnlock()
	if e.outClosed {
		return
	}
	select {
	case e.out <- ev:
		e.sent.Add(1)
	default:
		e.dropped.Add(ev.N()) // a folded event loses all its denials
	}
}

// Add enforces sb's egress policy on its cgroup. When it returns nil the
// programs are attached, the policy written and, in ModeProxy, the DNS of
// the cgroup steered to a running proxy; on error nothing of it is left.
func (e *Egress) Add(ctx context.Context, sb *enforce.Sandbox) error {
	return e.add(ctx, sb, nil)
}

// add is Add, or Claim when pinned is what was found pinned for it: the
// sandbox is then in the table and its programs attached (pinned) already,
// and a failure leaves it registered, enforced as far as it got (see
// Claim).
func (e *Egress) add(ctx context.Context, sb *enforce.Sandbox, pinned *written) (err error) {
	adopt := pinned != nil
	if sb == nil || sb.Policy == nil || sb.ID == 0 {
		return errors.New("add network rules: needs a sandbox id and a compiled policy")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add network rules of %s: %w", sb.Name, err)
	}
	mode := sb.Mode
	if mode == "" {
		mode = sb.Policy.Mode
	}
	s := &sandbox{sb: sb, audit: mode == policy.ModeAudit}
	if adopt {
		s.w.links, s.w.rules = pinned.links, pinned.rules
		s.w.cgroup = sb.CgroupID
	}
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return fmt.Errorf("add network rules of %s: closed", sb.Name)
	case e.sandboxes[sb.ID] != nil:
		e.mu.Unlock()
		return fmt.Errorf("add network rules of %s: policy id %d in use", sb.Name, sb.ID)
	}
	e.sandboxes[sb.ID] = s // reserves the id; forward names events only once attached
	e.mu.Unlock()
	defer func() {
		if err != nil && adopt {
			err = fmt.Errorf("adopt network rules of %s: %w", sb.Name, err)
			e.mu.Lock()
			s.ready = true // for Remove, once the caller killed its processes
			e.mu.Unlock()
			return
		}
		if err != nil {
			err = errors.Join(fmt.Errorf("add network rules of %s: %w", sb.Name, err), e.teardown(s))
			e.mu.Lock()
			delete(e.sandboxes, sb.ID)
			e.mu.Unlock()
		}
	}()

	np := sb.Policy.Net
	if err := e.setPolicy(s, np, nil); err != nil {
		return err
	}
	s.mode = ModeNone
	if want, answer := plan(np, s.audit); want {
		s.mode = ModeProxy
		if perr := e.startProxy(s, answer); perr != nil {
			s.mode, s.reason = ModeResolve, perr.Error()
			e.log.Warn("the DNS proxy cannot run: allowed domains are resolved by aigate every "+e.opts.ResolveEvery.String()+
				" instead; wildcards match nothing and the sandbox's own DNS is not filtered",
				zap.String("sandbox", sb.Name), zap.Error(perr))
			if err := e.startResolve(ctx, s); err != nil {
				return err
			}
		}
	}
	if e.standalone && !adopt {
		g, err := cgroup.Open(sb.CgroupPath)
		if err != nil {
			return err
		}
		if g.ID != sb.CgroupID {
			return fmt.Errorf("cgroup %s has id %d, not %d", sb.CgroupPath, g.ID, sb.CgroupID)
		}
		if err := e.net.AddSandbox(sb.ID, g, s.audit); err != nil {
			return err
		}
		s.w.rmu.Lock()
		s.w.tabled, s.w.cgroup = true, g.ID
		s.w.rmu.Unlock()
	}
	// Last: from here on the cgroup's sockets meet the complete policy.
	if !adopt {
		links, err := e.net.Attach(sb.ID, sb.CgroupPath)
		if err != nil {
			return err
		}
		s.w.rmu.Lock()
		s.w.links, s.w.cgroup = links, sb.CgroupID
		s.w.rmu.Unlock()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("closed while adding")
	}
	s.ready = true
	return nil
}

// startProxy starts s's DNS proxy and steers the cgroup's DNS to it.
func (e *Egress) startProxy(s *sandbox, answer policy.NetPolicy) error {
	sb := s.sb
	p, err := e.start(dns.Config{
		PolicyID:  sb.ID,
		Net:       answer,
		TTL:       sb.Policy.DNS,
		Sink:      sink{e, s},
		Upstreams: e.opts.Upstreams,
		Report: func(ev events.Event) {
			ev.Audit = s.audit
			e.refused[b2i(s.audit)].Add(1)
			e.emit(ev)
		},
		CgroupID:   sb.CgroupID,
		CgroupPath: sb.CgroupPath, // the refusal events name the process that asked
	})
	if err != nil {
		return err
	}
	if err := e.net.SetDNSProxy(sb.ID, proxyAddr4, proxyAddr6, p.Port()); err != nil {
		return errors.Join(err, p.Close())
	}
	s.proxy = p
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// LinkFDs returns the descriptors of the cgroup links that attach sandbox
// id's programs (see loader.NetLinks.FDs), valid until Remove.
func (e *Egress) LinkFDs(id uint32) []int {
	e.mu.Lock()
	s := e.sandboxes[id]
	e.mu.Unlock()
	if s == nil {
		return nil
	}
	s.w.rmu.Lock()
	defer s.w.rmu.Unlock()
	return s.w.links.FDs()
}

// Remove stops enforcing sb's egress policy: the proxy stops (removing the
// addresses it taught), then the programs are detached and the policy
// deleted. Removing an unknown id is a no-op.
func (e *Egress) Remove(id uint32) error {
	e.mu.Lock()
	s := e.sandboxes[id]
	if s != nil && !s.ready {
		e.mu.Unlock()
		return fmt.Errorf("remove network rules of %s: Add has not returned yet", s.sb.Name)
	}
	delete(e.sandboxes, id)
	pinned := e.pinned[id]
	delete(e.pinned, id)
	e.mu.Unlock()
	if s == nil {
		if pinned != nil {
			// Adopted from pins and never claimed: its rules are in the
			// maps all the same.
			return e.removeRules(id, pinned)
		}
		return nil
	}
	if err := e.teardown(s); err != nil {
		return fmt.Errorf("remove network rules of %s: %w", s.sb.Name, err)
	}
	return nil
}

// teardown undoes whatever part of Add happened for s.
func (e *Egress) teardown(s *sandbox) error {
	var errs []error
	if s.stop != nil {
		s.stop()
		<-s.loopDone
	}
	if s.proxy != nil {
		// Before the rules go: the proxy withdraws its addresses from the
		// policy, which must still exist.
		errs = append(errs, s.proxy.Close())
	}
	errs = append(errs, e.removeRules(s.sb.ID, &s.w))
	return errors.Join(errs...)
}

// Status is how a sandbox's egress policy is being kept, for `aigate status`.
type Status struct {
	Mode Mode
	// Reason says why the DNS proxy is not in use (ModeResolve).
	Reason string
	// DNS counts the proxy's work (ModeProxy).
	DNS dns.Stats
	// Resolved is the number of addresses allowed from the last resolution,
	// and ResolveErr its failures (ModeResolve); names that failed keep
	// their previous addresses.
	Resolved   int
	ResolveErr string
}

// Status reports how the egress policy of sandbox id is kept.
func (e *Egress) Status(id uint32) (Status, bool) {
	e.mu.Lock()
	s := e.sandboxes[id]
	ready := s != nil && s.ready
	e.mu.Unlock()
	if !ready {
		return Status{}, false
	}
	st := Status{Mode: s.mode, Reason: s.reason}
	if s.proxy != nil {
		st.DNS = s.proxy.Stats()
	}
	s.mu.Lock()
	for _, a := range s.resolved {
		st.Resolved += len(a)
	}
	if s.lastErr != nil {
		st.ResolveErr = s.lastErr.Error()
	}
	s.mu.Unlock()
	return st, true
}

// Events delivers the proxies' refusals (kind net, op dns) and, for a
// standalone Net, the kernel's network denials; closed by Close.
func (e *Egress) Events() <-chan events.Event { return e.out }

// Stats returns the counters Egress is the only source of: the proxies'
// refusals, the standalone Net's kernel counters, and the events this
// component dropped. A sharing Net's kernel counters are the LSM's.
func (e *Egress) Stats() (enforce.Stats, error) {
	var st enforce.Stats
	if e.standalone {
		var err error
		if st, err = e.net.Stats(); err != nil {
			return enforce.Stats{}, err
		}
	}
	var own enforce.Stats
	for i := range e.refused {
		if v := e.refused[i].Load(); v > 0 {
			own.Violations = append(own.Violations, enforce.Counter{Kind: events.KindNet, Op: events.OpDNS, Audit: i == 1, Value: v})
		}
	}
	own.EventsDropped = e.dropped.Load()
	return MergeStats(st, own), nil
}

// Close removes every sandbox's network rules, stops the proxies, closes
// the Net and then the Events channel.
func (e *Egress) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		var all []*sandbox
		for id, s := range e.sandboxes {
			if s.ready { // an Add in progress undoes itself
				all = append(all, s)
				delete(e.sandboxes, id)
			}
		}
		pinned := e.pinned
		e.pinned = map[uint32]*written{}
		e.mu.Unlock()
		var errs []error
		for _, s := range all {
			errs = append(errs, e.teardown(s))
		}
		for id, w := range pinned {
			errs = append(errs, e.removeRules(id, w))
		}
		errs = append(errs, e.net.Close()) // ends the standalone event stream
		e.wg.Wait()
		e.outMu.Lock()
		e.outClosed = true
		close(e.out)
		e.outMu.Unlock()
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

// GuardIDEPort implements enforce.IDEPorts: the ingress program on the
// sandbox's cgroup drops loopback connections to its listeners on port.
func (e *Egress) GuardIDEPort(id uint32, port uint16) error {
	e.mu.Lock()
	s := e.sandboxes[id]
	e.mu.Unlock()
	if s == nil {
		return fmt.Errorf("guard IDE lock port %d: no network rules for sandbox %d", port, id)
	}
	return e.net.GuardIDEPort(s.sb.CgroupID, port)
}

// SandboxBound implements enforce.UnixOwner: the network object's, which
// confines unix sockets by name (false where it does not).
func (e *Egress) SandboxBound(cgroupID uint64, pid uint32, name string, dev, ino uint64) (bool, error) {
	if o, ok := e.net.(enforce.UnixOwner); ok {
		return o.SandboxBound(cgroupID, pid, name, dev, ino)
	}
	return false, nil
}

// RefusalsReported implements enforce.RefusalReporter: the network
// object's sys_exit program sends the calls Landlock may have refused.
func (e *Egress) RefusalsReported() error {
	if r, ok := e.net.(enforce.RefusalReporter); ok {
		return r.RefusalsReported()
	}
	return errors.New("the network object reports no refused calls")
}
