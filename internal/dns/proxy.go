package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Defaults for policy.DNS fields left at zero.
const (
	DefaultMinTTL = policy.DefaultDNSMinTTL
	DefaultMaxTTL = policy.DefaultDNSMaxTTL
	// DefaultOwnerBudget bounds the search for the process behind one
	// refused query: reading one descriptor of /proc/PID/fd costs about
	// 5 µs, so this is some 1000 descriptors of the sandbox's processes.
	DefaultOwnerBudget = 5 * time.Millisecond
)

// AddrSink is where the proxy puts the addresses it learns; internal/egress
// gives each proxy one that writes its sandbox's rules.
type AddrSink interface {
	// UpdateAddrs adds and removes addresses allowed through domain entry d.
	UpdateAddrs(policyID uint32, d policy.DomainEntry, add, remove []netip.Addr) error
	// AddrInUse reports whether a live connection of the sandbox uses addr.
	AddrInUse(policyID uint32, addr netip.Addr) (bool, error)
}

// Config describes one sandbox's proxy.
type Config struct {
	// PolicyID is the sandbox's policy id in the kernel maps.
	PolicyID uint32
	// Net is the sandbox's compiled egress policy: Domains decide which
	// names resolve; in NetAllow mode every name does.
	Net policy.NetPolicy
	// TTL bounds how long learned addresses stay allowed; zero fields take
	// DefaultMinTTL and DefaultMaxTTL.
	TTL policy.DNS
	// Sink receives the learned addresses.
	Sink AddrSink
	// Upstreams are the resolvers ("host:port") queries go to, in order;
	// nil reads /etc/resolv.conf.
	Upstreams []string
	// Report receives one event per refused query; nil drops them.
	Report func(events.Event)
	// CgroupID is stamped on the events; the agent names their sandbox.
	CgroupID uint64
	// CgroupPath is the sandbox's cgroup directory. When set, the proxy
	// answers only clients whose socket was created in this cgroup or one
	// below it (sock_diag reports the socket's cgroup; others get REFUSED
	// and count in Stats.Strangers), and each refusal event names the process that asked (TGID, UID, Comm), searched for
	// among the processes of this cgroup and those below it (Linux); when
	// the search fails or runs out of time they stay zero. Start must then
	// run in the network namespace of the listeners.
	CgroupPath string
	// OwnerBudget bounds one search; zero means DefaultOwnerBudget. All
	// searches take at most 20 budgets in any second.
	OwnerBudget time.Duration
	// Listen4 and Listen6 are the addresses served (UDP and TCP, one port
	// for all four sockets); zero values mean 127.0.0.1 and ::1. The port
	// is chosen by the kernel.
	Listen4, Listen6 netip.Addr
	// UDP and TCP, when set, are used instead of opening sockets (tests
	// open them inside a network namespace); they must all share one port.
	UDP []net.PacketConn
	TCP []net.Listener
	// Timeout bounds one upstream exchange; zero means 2s.
	Timeout time.Duration
}

// Stats counts what a proxy did.
type Stats struct {
	Queries   uint64 // received
	Refused   uint64 // names the policy does not allow, and Strangers
	Strangers uint64 // queries from sockets outside the proxy's sandbox
	Forwarded uint64 // answered from upstream, or from the cache
	Cached    uint64 // of Forwarded, answered from the cache of upstream answers
	Failed    uint64 // SERVFAIL: upstream unreachable or the allow map refused an update
	Learned   uint64 // addresses currently allowed through this proxy

	// Of the refusal events: those that name the process that asked, those
	// whose process was not found, and the time all the searches took.
	OwnersFound  uint64
	OwnersMissed uint64
	OwnerTime    time.Duration
}

// Proxy serves one sandbox.
type Proxy struct {
	cfg          Config
	min, max     time.Duration
	port         uint16
	servers      []*mdns.Server // TCP, and packet conns other than UDPConn
	udp          []*net.UDPConn // served by udp.go
	udpListeners []*udpListener
	client       *mdns.Client
	tcp          *mdns.Client
	pools        []*upstreamPool // per upstream; nil for a host name (upstream.go)
	timeout      time.Duration

	queries, refused, forwarded, failed, cached atomic.Uint64
	cache                                       answerCache // upstream answers within their TTL (cache.go)

	members   *memberCheck // nil: every client is answered
	strangers atomic.Uint64

	owners                *ownerFinder // nil: events carry no process
	ownersErr             error        // why owners is nil
	found, missed, ownerT atomic.Uint64

	mu    sync.Mutex
	table map[grant]*entry      // what the sink holds, with expiry
	names map[netip.Addr]string // address -> name last resolved to it

	wake  chan struct{} // learn added to an empty table: expiry has work
	wakes atomic.Uint64 // tokens learn sent (tests)
	done  chan struct{}
	wg    sync.WaitGroup
}

// grant is one address allowed through one domain entry.
type grant struct {
	d    policy.DomainEntry
	addr netip.Addr
}

type entry struct {
	expires time.Time
	name    string
}

// udpIdleWake is how long a UDP listener waits for a query before its
// loop goes round again.
const udpIdleWake = time.Hour

// Start opens the listeners (unless given) and serves until Close.
func Start(cfg Config) (*Proxy, error) {
	if cfg.Sink == nil {
		return nil, errors.New("start DNS proxy: no address sink")
	}
	p := &Proxy{
		cfg:   cfg,
		min:   cfg.TTL.MinTTL,
		max:   cfg.TTL.MaxTTL,
		table: map[grant]*entry{},
		names: map[netip.Addr]string{},
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	if p.min == 0 {
		p.min = DefaultMinTTL
	}
	if p.max == 0 {
		p.max = max(DefaultMaxTTL, p.min)
	}
	if p.min > p.max {
		return nil, fmt.Errorf("start DNS proxy: dns.min_ttl %s is greater than dns.max_ttl %s", p.min, p.max)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	p.timeout = timeout
	p.client = &mdns.Client{Net: "udp", Timeout: timeout}
	p.tcp = &mdns.Client{Net: "tcp", Timeout: timeout}
	if len(cfg.Upstreams) == 0 {
		up, err := SystemUpstreams("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("start DNS proxy: %w", err)
		}
		p.cfg.Upstreams = up
	}
	for _, up := range p.cfg.Upstreams {
		p.pools = append(p.pools, newUpstreamPool(up))
	}
	if len(cfg.UDP) == 0 && len(cfg.TCP) == 0 {
		udp, tcp, err := listen(cmpAddr(cfg.Listen4, netip.MustParseAddr("127.0.0.1")), cmpAddr(cfg.Listen6, netip.IPv6Loopback()))
		if err != nil {
			return nil, fmt.Errorf("start DNS proxy: %w", err)
		}
		p.cfg.UDP, p.cfg.TCP = udp, tcp
	}
	port, err := samePort(p.cfg.UDP, p.cfg.TCP)
	if err != nil {
		closeAll(p.cfg.UDP, p.cfg.TCP)
		return nil, fmt.Errorf("start DNS proxy: %w", err)
	}
	p.port = port
	var l any
	if len(p.cfg.UDP) > 0 {
		l = p.cfg.UDP[0]
	} else {
		l = p.cfg.TCP[0]
	}
	if cfg.CgroupPath != "" {
		// Without it (no sock_diag) the kernel's refusal of other
		// sandboxes' queries is the only one.
		p.members, _ = newMemberCheck(cfg.CgroupPath, l)
	}
	if cfg.CgroupPath != "" && cfg.Report != nil {
		// Without it the proxy still works: its events name no process.
		p.owners, p.ownersErr = newOwnerFinder(cfg.CgroupPath, l, cmp.Or(cfg.OwnerBudget, DefaultOwnerBudget))
	} else {
		p.ownersErr = errors.New("no sandbox cgroup or no event sink given")
	}
	h := mdns.HandlerFunc(p.serve)
	for _, pc := range p.cfg.UDP {
		if u, ok := pc.(*net.UDPConn); ok {
			p.udp = append(p.udp, u)
			continue
		}
		// ReadTimeout is only how often the UDP loop wakes up when no
		// query comes (2 s by default; Shutdown unblocks the read
		// itself): with a proxy per sandbox, 1,000 idle sandboxes woke
		// the agent 1,000 times a second.
		p.servers = append(p.servers, &mdns.Server{PacketConn: pc, Handler: h, ReadTimeout: udpIdleWake})
	}
	for _, u := range p.udp {
		p.serveUDP(u) // udp.go
	}
	for _, l := range p.cfg.TCP {
		p.servers = append(p.servers, &mdns.Server{Listener: l, Handler: h})
	}
	for _, s := range p.servers {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_ = s.ActivateAndServe() // returns when Close shuts the server down
		}()
		<-started
	}
	p.wg.Add(1)
	go p.expireLoop()
	return p, nil
}

func cmpAddr(a, def netip.Addr) netip.Addr {
	if a.IsValid() {
		return a
	}
	return def
}

// listen opens UDP and TCP on a4 and a6 at one port the kernel picks,
// retrying when the port is taken for one of the four.
func listen(a4, a6 netip.Addr) ([]net.PacketConn, []net.Listener, error) {
	var lastErr error
	for range 20 {
		u4, err := net.ListenPacket("udp4", netip.AddrPortFrom(a4, 0).String())
		if err != nil {
			return nil, nil, fmt.Errorf("listen on %s: %w", a4, err)
		}
		port := uint16(u4.LocalAddr().(*net.UDPAddr).Port)
		u6, err := net.ListenPacket("udp6", netip.AddrPortFrom(a6, port).String())
		if err != nil {
			lastErr = err
			u4.Close()
			continue
		}
		t4, err := net.Listen("tcp4", netip.AddrPortFrom(a4, port).String())
		if err != nil {
			lastErr = err
			closeAll([]net.PacketConn{u4, u6}, nil)
			continue
		}
		t6, err := net.Listen("tcp6", netip.AddrPortFrom(a6, port).String())
		if err != nil {
			lastErr = err
			closeAll([]net.PacketConn{u4, u6}, []net.Listener{t4})
			continue
		}
		return []net.PacketConn{u4, u6}, []net.Listener{t4, t6}, nil
	}
	return nil, nil, fmt.Errorf("no port free for UDP and TCP on %s and %s: %w", a4, a6, lastErr)
}

func samePort(udp []net.PacketConn, tcp []net.Listener) (uint16, error) {
	var port uint16
	check := func(a net.Addr) error {
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return err
		}
		if port != 0 && ap.Port() != port {
			return fmt.Errorf("listeners on ports %d and %d: the kernel steers to one port", port, ap.Port())
		}
		port = ap.Port()
		return nil
	}
	for _, pc := range udp {
		if err := check(pc.LocalAddr()); err != nil {
			return 0, err
		}
	}
	for _, l := range tcp {
		if err := check(l.Addr()); err != nil {
			return 0, err
		}
	}
	if port == 0 {
		return 0, errors.New("no listener")
	}
	return port, nil
}

func closeAll(udp []net.PacketConn, tcp []net.Listener) {
	for _, pc := range udp {
		pc.Close()
	}
	for _, l := range tcp {
		l.Close()
	}
}

// Port is the port the proxy serves on, for loader.Net.SetDNSProxy.
func (p *Proxy) Port() uint16 { return p.port }

// DomainOf returns the name addr was last resolved for through this proxy,
// or "", for the events of the sandbox's connections (egress.DomainOf).
func (p *Proxy) DomainOf(addr netip.Addr) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.names[addr.Unmap()]
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	learned := uint64(len(p.table))
	p.mu.Unlock()
	return Stats{
		Queries: p.queries.Load(), Refused: p.refused.Load(), Forwarded: p.forwarded.Load(),
		Failed: p.failed.Load(), Learned: learned, Strangers: p.strangers.Load(), Cached: p.cached.Load(),
		OwnersFound: p.found.Load(), OwnersMissed: p.missed.Load(), OwnerTime: time.Duration(p.ownerT.Load()),
	}
}

// Resync writes every address the proxy currently allows to the sink
// again: writing a policy again (egress) replaces its learned addresses, so the
// agent calls Resync after it changes the policy of a running sandbox.
func (p *Proxy) Resync() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	byEntry := map[policy.DomainEntry][]netip.Addr{}
	for g := range p.table {
		byEntry[g.d] = append(byEntry[g.d], g.addr)
	}
	var errs []error
	for d, addrs := range byEntry {
		if err := p.cfg.Sink.UpdateAddrs(p.cfg.PolicyID, d, addrs, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("resync DNS proxy on port %d: %w", p.port, err)
	}
	return nil
}

// OwnerLookup says why the refusal events do not name the process that
// asked, or nil when they do (as far as each search succeeds).
func (p *Proxy) OwnerLookup() error {
	if p.owners == nil {
		return fmt.Errorf("DNS refusals name no process: %w", p.ownersErr)
	}
	return nil
}

// serve answers one query over TCP (udp.go serves UDP).
func (p *Proxy) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	c := peer{tcp: w.LocalAddr().Network() == "tcp", client: addrPort(w.RemoteAddr()), proxy: addrPort(w.LocalAddr())}
	var used spent
	_ = w.WriteMsg(p.respond(req, c, &used))
	used.release()
}

// respond answers req from client c. The upstream socket the answer took,
// if any, is left in used, to be released once the answer is written.
func (p *Proxy) respond(req *mdns.Msg, c peer, used *spent) *mdns.Msg {
	p.queries.Add(1)
	if p.members != nil {
		// A proxy answers by its own sandbox's policy, to its sandbox only.
		// Only a client the kernel reports in another cgroup is refused:
		// where it cannot find the client's socket (6.1's UDP lookup
		// misses unconnected sockets; a client that closed its socket
		// already), the kernel's refusal of other sandboxes' proxy ports
		// is the check that holds, as before Linux 5.9.
		if ok, err := p.members.member(c); !ok && err == nil {
			p.refused.Add(1)
			p.strangers.Add(1)
			return new(mdns.Msg).SetRcode(req, mdns.RcodeRefused)
		}
	}
	return p.answer(req, c, used)
}

// spent is the upstream socket a query used, closed and replaced once the
// answer is written (upstream.go).
type spent struct {
	pool *upstreamPool
	conn *os.File
}

func (s *spent) release() {
	if s.conn != nil {
		s.pool.done(s.conn)
		s.conn = nil
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// peer is a client of the proxy as the proxy sees it. The kernel steered
// the client's query here by rewriting its destination only (the recvmsg
// programs rewrite the source of the replies the client reads, not what the
// proxy sees), so client is the client socket's own address and port, and
// proxy the peer that socket has if it connected.
type peer struct {
	tcp           bool
	client, proxy netip.AddrPort
}

// owner is the sandbox process found holding a client's socket.
type owner struct {
	tgid uint32
	uid  uint32 // the socket's owner (its creator's fsuid)
	comm string
}

func (p *Proxy) answer(req *mdns.Msg, c peer, used *spent) *mdns.Msg {
	overTCP := c.tcp
	if req.Opcode != mdns.OpcodeQuery || len(req.Question) != 1 {
		p.refused.Add(1)
		return new(mdns.Msg).SetRcode(req, mdns.RcodeRefused)
	}
	q := req.Question[0]
	name := canonical(q.Name)
	if isLocalhost(name) {
		return localhostAnswer(req, q)
	}
	allowed := matching(p.cfg.Net.Domains, name)
	if len(allowed) == 0 && p.cfg.Net.Mode != policy.NetAllow {
		p.refused.Add(1)
		p.report(name, c)
		return new(mdns.Msg).SetRcode(req, mdns.RcodeRefused)
	}
	key, cacheable := keyOf(req, overTCP)
	var resp *mdns.Msg
	if cacheable {
		resp = p.cache.get(key, time.Now())
	}
	if resp != nil {
		p.cached.Add(1)
		resp.Question = slices.Clone(req.Question)
	} else {
		var err error
		if resp, err = p.forward(req, overTCP, used); err != nil {
			p.failed.Add(1)
			return new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure)
		}
		if cacheable {
			p.cache.put(key, resp, time.Now())
		}
	}
	// A cached answer is learned again: its addresses may have expired
	// from the allow map (after at least min_ttl) while its TTL runs.
	if err := p.learn(allowed, name, chainAddrs(resp, q.Name)); err != nil {
		// The client could not connect to what we would answer: say so.
		p.failed.Add(1)
		return new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure)
	}
	capTTLs(resp, p.max)
	resp.Id = req.Id
	p.forwarded.Add(1)
	return resp
}

// forward asks the upstreams in order; a truncated UDP answer is retried
// over TCP so that the client gets every address the proxy learned. The
// UDP socket it used is left in used, to be released after the answer.
func (p *Proxy) forward(req *mdns.Msg, overTCP bool, used *spent) (*mdns.Msg, error) {
	var errs []error
	for i, up := range p.cfg.Upstreams {
		var resp *mdns.Msg
		var err error
		switch {
		case overTCP:
			resp, _, err = p.tcp.Exchange(req, up)
		case p.pools[i] != nil:
			resp, err = p.exchangeUDP(p.pools[i], req, used)
		default:
			resp, _, err = p.client.Exchange(req, up)
		}
		if err == nil && resp.Truncated && !overTCP {
			resp, _, err = p.tcp.Exchange(req, up)
		}
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
	}
	return nil, fmt.Errorf("forward query: %w", errors.Join(errs...))
}

// exchangeUDP asks one upstream over a socket from its pool.
func (p *Proxy) exchangeUDP(u *upstreamPool, req *mdns.Msg, used *spent) (*mdns.Msg, error) {
	used.release() // an earlier upstream's, which failed
	c, err := u.take()
	if err != nil {
		return nil, err
	}
	used.pool, used.conn = u, c
	return exchange(c, req, p.timeout)
}

// learn writes the addresses to the sink for every allowing entry before
// the answer is returned, and records when each expires.
func (p *Proxy) learn(allowed []policy.DomainEntry, name string, addrs []learned) error {
	if len(addrs) == 0 {
		return nil
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	idle := len(p.table) == 0 && len(p.names) == 0 // expireLoop sleeps, or will
	var errs []error
	for _, d := range allowed {
		var add []netip.Addr
		for _, l := range addrs {
			g := grant{d, l.addr}
			exp := now.Add(clamp(l.ttl, p.min, p.max))
			e := p.table[g]
			if e == nil {
				add = append(add, l.addr)
				e = &entry{}
			}
			if exp.After(e.expires) {
				e.expires = exp
			}
			e.name = name
			p.table[g] = e
		}
		if len(add) == 0 {
			continue
		}
		if err := p.cfg.Sink.UpdateAddrs(p.cfg.PolicyID, d, add, nil); err != nil {
			for _, a := range add {
				delete(p.table, grant{d, a})
			}
			errs = append(errs, err)
		}
	}
	for _, l := range addrs {
		p.names[l.addr] = name
	}
	// Only a table that was empty needs the loop woken: a loop with
	// something to expire ticks anyway, and waking it on every answer
	// cost a thread wake-up per query (issue #15).
	if idle {
		p.wakes.Add(1)
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return errors.Join(errs...)
}

// report emits the refusal of name. It searches for the process that asked
// first, while the client waits for the answer and so still holds its
// socket; the search is bounded in time (see ownerFinder.find).
func (p *Proxy) report(name string, c peer) {
	if p.cfg.Report == nil {
		return
	}
	var o owner
	if p.owners != nil && c.client.IsValid() && c.proxy.IsValid() {
		start := time.Now()
		var err error
		o, err = p.owners.find(c)
		p.ownerT.Add(uint64(time.Since(start)))
		if err != nil {
			p.missed.Add(1)
		} else {
			p.found.Add(1)
		}
	}
	p.cfg.Report(events.Event{
		TGID:     o.tgid,
		UID:      o.uid,
		Comm:     o.comm,
		Time:     time.Now(),
		CgroupID: p.cfg.CgroupID,
		Kind:     events.KindNet,
		Op:       events.OpDNS,
		Domain:   name,
		Rule:     uint32(p.cfg.Net.DenyRule),
		Backend:  "dns",
	})
}

// expireLoop removes expired addresses once a second.
//
// It ticks only while the table holds something: the agent runs a proxy
// per sandbox, and a thousand idle sandboxes woke it a thousand times a
// second for nothing. learn wakes it (wake holds a token, so one sent
// while the loop was deciding to sleep is not lost).
func (p *Proxy) expireLoop() {
	defer p.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if p.empty() {
			tick.Stop()
			select {
			case <-p.done:
				return
			case <-p.wake:
			}
			tick.Reset(time.Second)
			continue
		}
		select {
		case <-p.done:
			return
		case <-p.wake:
		case now := <-tick.C:
			p.expire(now)
		}
	}
}

// empty reports whether nothing is left to expire.
func (p *Proxy) empty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.table) == 0 && len(p.names) == 0
}

// inUseGrace is how long an expired address in use by a live connection is
// kept before the proxy asks again.
const inUseGrace = 5 * time.Second

// expire removes the grants that expired before now, except those whose
// address a live connection still uses.
func (p *Proxy) expire(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	byEntry := map[policy.DomainEntry][]netip.Addr{}
	for g, e := range p.table {
		if e.expires.After(now) {
			continue
		}
		if used, err := p.cfg.Sink.AddrInUse(p.cfg.PolicyID, g.addr); err == nil && used {
			e.expires = now.Add(inUseGrace)
			continue
		}
		byEntry[g.d] = append(byEntry[g.d], g.addr)
	}
	for d, addrs := range byEntry {
		if err := p.cfg.Sink.UpdateAddrs(p.cfg.PolicyID, d, nil, addrs); err != nil {
			continue // kept in the table: retried on the next tick
		}
		for _, a := range addrs {
			delete(p.table, grant{d, a})
		}
	}
	for a := range p.names {
		if !p.stillGranted(a) {
			delete(p.names, a)
		}
	}
}

func (p *Proxy) stillGranted(a netip.Addr) bool {
	for g := range p.table {
		if g.addr == a {
			return true
		}
	}
	return false
}

// Close stops serving and removes every address the proxy added.
func (p *Proxy) Close() error {
	close(p.done)
	var errs []error
	for _, s := range p.servers {
		if err := s.ShutdownContext(context.Background()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range p.udp {
		if err := u.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.wg.Wait()
	for _, u := range p.pools {
		if u != nil {
			u.close()
		}
	}
	if p.members != nil {
		errs = append(errs, p.members.close())
	}
	if p.owners != nil {
		errs = append(errs, p.owners.close())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	byEntry := map[policy.DomainEntry][]netip.Addr{}
	for g := range p.table {
		byEntry[g.d] = append(byEntry[g.d], g.addr)
	}
	for d, addrs := range byEntry {
		if err := p.cfg.Sink.UpdateAddrs(p.cfg.PolicyID, d, nil, addrs); err != nil {
			errs = append(errs, err)
		}
	}
	clear(p.table)
	clear(p.names)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close DNS proxy on port %d: %w", p.port, err)
	}
	return nil
}

// SystemUpstreams reads the nameservers of a resolv.conf file. A local
// stub such as systemd-resolved's 127.0.0.53 is fine: the proxy runs
// outside every sandbox, so its own queries are not steered.
func SystemUpstreams(path string) ([]string, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read upstream resolvers: %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("read upstream resolvers: %s lists no nameserver", path)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, strconv.Itoa(cmpPort(cc.Port))))
	}
	return out, nil
}

func cmpPort(p string) int {
	if n, err := strconv.Atoi(p); err == nil && n > 0 {
		return n
	}
	return 53
}

// isLocalhost reports whether name is "localhost" or below it, which RFC
// 6761 reserves for the loopback addresses. Resolvers that miss
// /etc/hosts (getent hosts localhost, some runtimes' own DNS clients) ask
// for it; refusing them reported "blocked dns localhost" for a name that
// reaches nothing allow_loopback does not already govern.
func isLocalhost(name string) bool {
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}

// localhostAnswer answers a localhost query itself, never upstream: A
// 127.0.0.1, AAAA ::1, and no records for other types.
func localhostAnswer(req *mdns.Msg, q mdns.Question) *mdns.Msg {
	resp := new(mdns.Msg).SetReply(req)
	resp.Authoritative = true
	hdr := mdns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: mdns.ClassINET, Ttl: 60}
	switch q.Qtype {
	case mdns.TypeA:
		resp.Answer = append(resp.Answer, &mdns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1).To4()})
	case mdns.TypeAAAA:
		resp.Answer = append(resp.Answer, &mdns.AAAA{Hdr: hdr, AAAA: net.IPv6loopback})
	}
	return resp
}
