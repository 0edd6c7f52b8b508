//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/llaudit"
	"github.com/aigate-dev/aigate/internal/metrics"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// Defaults for Config's limits.
const (
	DefaultMaxSandboxesPerUser = 32
	DefaultMaxConns            = 256
	// DefaultMaxConnsPerUser leaves room for a user's sandbox sessions
	// (at most DefaultMaxSandboxesPerUser) and as many watchers, so that
	// one user, or a sandboxed tool running as that user and dialling the
	// socket in a loop, cannot take every connection of the agent.
	DefaultMaxConnsPerUser = 2 * DefaultMaxSandboxesPerUser
)

// Timeouts; variables so that tests can shorten them.
var (
	// requestTimeout is how long a client has to send its request once
	// connected, and placeTimeout how long a session has to place its
	// command once created.
	requestTimeout = 5 * time.Second
	placeTimeout   = 30 * time.Second
	// responseTimeout bounds writing an answer to a request.
	responseTimeout = 5 * time.Second
)

// Config configures an agent.
type Config struct {
	// Backend enforces the sandboxes. The agent owns it from New on and
	// closes it in Close.
	Backend enforce.Backend
	// Socket is where to listen (api.DefaultSocket when empty).
	Socket string
	// Group may use the socket (api.Group when empty).
	Group string
	// Parent is the cgroup holding the sandboxes, below the cgroup v2 mount
	// (sandbox.DefaultParent when empty).
	Parent string
	Log    *zap.Logger
	// Build and Commit identify aigate, for status and build info.
	Build, Commit string
	// MetricsAddr is reported by status ("" when metrics are off).
	MetricsAddr string
	// Limits; zero takes the defaults.
	MaxSandboxesPerUser int
	// MaxConns bounds the connections of all users but root, MaxConnsPerUser
	// those of each one. Root's connections are not counted: root can stop
	// the agent anyway, and must be able to reach it when users have
	// taken every slot.
	MaxConns        int
	MaxConnsPerUser int
	// Records is the directory of the sandbox records that a restarted
	// agent adopts the sandboxes by, when Backend is an enforce.Pinner
	// (DefaultRecords when empty).
	Records string
	// Journal is the directory of the ~/.claude.json journals
	// (claudejson.go; DefaultJournal when empty).
	Journal string
	// AfterRun is the directory of the after-run journals (afterrun.go;
	// DefaultAfterRun when empty).
	AfterRun string
	// TrustDir holds the users' trust records (<uid>.yaml, root-owned,
	// 0644), written only through the trust request from outside every
	// sandbox, and their accepted global policies (<uid>.policy.yaml,
	// policyrec.go). Empty: the agent keeps neither, takes the client's
	// trust decision, read from ~/.aigate/trusted.yaml, and compares no
	// global policy (`run --trust-dir ""`).
	TrustDir string
	// Embedded marks the agent `sudo aigate run` starts inside itself:
	// it keeps the trust records and the accepted global policies in
	// TrustDir as the service agent does (the same directory, so both
	// modes decide from the same records), and its refusals name `sudo
	// aigate policy accept`, which records without an agent
	// (AnswerPolicy, AnswerTrust).
	Embedded bool
	// EnableAudit enables the kernel's audit when it is off, so that the
	// sandboxes' Landlock refusals are reported (landlockaudit.go). Off by
	// default: the cost falls on every process of the machine.
	EnableAudit bool

	// beforePeer, for tests, runs between accepting a connection and
	// asking who is on the other end: a test holds it there to hand the
	// client's pid to another process first.
	beforePeer func()
}

// Agent serves the API and owns the sandboxes.
type Agent struct {
	cfg     Config
	log     *zap.Logger
	be      enforce.Backend
	ln      *api.Listener
	fan     *fanout
	empty   *emptyWatch
	ide     *ideWatch // the sandboxes' IDE lock directories (idelocks.go)
	reg     *prometheus.Registry
	started time.Time

	mu      sync.Mutex
	trustMu sync.Mutex // serialises changes of the trust and policy records
	placeMu sync.Mutex // serialises moves of clients' processes (place.go)
	// parsedPolicies is the last policy records file read per uid, with
	// its bytes (under trustMu; policyrec.go).
	parsedPolicies map[uint32]parsedPolicies
	boxes          map[string]*box
	byCgroup       map[uint64]*box
	conns          map[net.Conn]struct{}
	perUser        map[uint32]int // open connections by peer uid, root not counted
	userConns      int            // their sum
	closing        bool

	ll      *landlockAudit // nil when Landlock's refusals are not read (landlockaudit.go)
	refused refusals       // Landlock's refusals from failed system calls (refused.go)
	quiet   quietCounts    // refusals not counted as violations (unreachable.go)
	own     ownJoin        // Claude Code's own refusals, for the audit reader (claudeown.go)
	pumped  atomic.Uint64  // events the pump has handed on, for settle
	undone  atomic.Uint64  // ~/.claude.json files put back (claudejson.go)

	wg       sync.WaitGroup // connections
	pumpDone chan struct{}
	closed   chan struct{}
}

// New sweeps what a dead agent left, listens on the socket and starts
// taking the backend's events. Serve then accepts clients.
func New(cfg Config) (*Agent, error) {
	if cfg.Backend == nil {
		return nil, errors.New("start agent: no enforcement backend")
	}
	if cfg.Socket == "" {
		cfg.Socket = api.DefaultSocket
	}
	if cfg.Group == "" {
		cfg.Group = api.Group
	}
	if cfg.Parent == "" {
		cfg.Parent = sandbox.DefaultParent
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.MaxSandboxesPerUser == 0 {
		cfg.MaxSandboxesPerUser = DefaultMaxSandboxesPerUser
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerUser == 0 {
		cfg.MaxConnsPerUser = DefaultMaxConnsPerUser
	}
	if cfg.Records == "" {
		cfg.Records = DefaultRecords
	}
	if cfg.Journal == "" {
		cfg.Journal = DefaultJournal
	}
	if cfg.AfterRun == "" {
		cfg.AfterRun = DefaultAfterRun
	}
	a := &Agent{
		cfg:      cfg,
		log:      cfg.Log,
		be:       cfg.Backend,
		fan:      newFanout(),
		started:  time.Now(),
		boxes:    make(map[string]*box),
		byCgroup: make(map[uint64]*box),
		conns:    make(map[net.Conn]struct{}),
		perUser:  make(map[uint32]int),
		pumpDone: make(chan struct{}),
		closed:   make(chan struct{}),
	}
	empty, err := newEmptyWatch(a.onEmpty)
	if err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	a.empty = empty
	if a.ide, err = newIDEWatch(a.onIDELock); err != nil {
		a.empty.close()
		return nil, fmt.Errorf("start agent: %w", err)
	}
	// A pinning backend kept enforcing the sandboxes of a dead agent: they
	// are taken over (adopt.go). Sandboxes whose owner (a dead agent or
	// run) is gone otherwise are no longer enforced by anyone: Sweep kills
	// what runs in them and removes them.
	a.adoptPinned()
	notes, err := sandbox.Sweep(cfg.Parent)
	if err != nil {
		a.closeAdopted()
		return nil, fmt.Errorf("start agent: %w", err)
	}
	for _, n := range notes {
		a.log.Warn(n)
	}
	a.replayJournals()
	a.replayAfterRun()
	ln, lnNotes, err := api.Listen(cfg.Socket, cfg.Group)
	if err != nil {
		a.closeAdopted()
		return nil, fmt.Errorf("start agent: %w", err)
	}
	for _, n := range lnNotes {
		a.log.Warn(n)
	}
	a.ln = ln
	a.log.Info("listening", zap.String("socket", ln.Path), zap.Stringer("mode", ln.Mode), zap.Int("gid", ln.GID),
		zap.String("backend", a.be.Name()))
	a.reg = metrics.New(metrics.Options{
		Stats:        a.stats,
		Sandboxes:    a.sandboxCount,
		Rules:        a.ruleCounts,
		WatchDropped: a.fan.dropped.Load,
		Undone:       a.undone.Load,
		Landlock:     a.landlockCounts,
		Backend:      a.be.Name(),
		Version:      cfg.Build,
		Commit:       cfg.Commit,
	})
	a.startLandlockAudit()
	a.startRefusals()
	go a.pump()
	return a, nil
}

// Registry holds the agent's metrics, for metrics.Handler.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// Socket is the path the agent listens on.
func (a *Agent) Socket() string { return a.ln.Path }

// Serve accepts clients until ctx is done, then shuts the agent down (see
// Close).
func (a *Agent) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { a.Close() })
	defer stop()
	for {
		nc, err := a.ln.AcceptUnix()
		if err != nil {
			select {
			case <-a.closed:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			a.log.Warn("accept", zap.Error(err))
			time.Sleep(50 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		if a.cfg.beforePeer != nil {
			a.cfg.beforePeer()
		}
		peer, err := api.PeerOf(nc)
		if errors.Is(err, api.ErrPeerGone) {
			// Its pid may name another process already: nothing read
			// under /proc of it could say who asks.
			a.refuse(nc, &api.Error{Code: api.CodeForbidden, Message: err.Error()})
			continue
		}
		if err != nil {
			a.log.Warn("connection without credentials", zap.Error(err))
			nc.Close()
			continue
		}
		if e := a.admit(nc, peer); e == errClosing {
			peer.Close()
			nc.Close()
			continue
		} else if e != nil {
			peer.Close()
			a.refuse(nc, e)
			continue
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer a.release(nc, peer)
			a.serveConn(nc, peer)
		}()
	}
}

// errClosing is admit's answer once Close has begun: the connection is
// closed without a word, like the listener's.
var errClosing = &api.Error{Code: api.CodeInternal, Message: "the agent is shutting down"}

// admit counts a new connection against the limits, or says which one it
// would pass. Refusals are answered in Serve's goroutine with a write
// deadline, so a flood costs the flooder, not the agent.
func (a *Agent) admit(nc net.Conn, peer api.Peer) *api.Error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return errClosing
	}
	if !peer.Root() {
		if a.perUser[peer.UID] >= a.cfg.MaxConnsPerUser {
			return &api.Error{Code: api.CodeLimit, Message: fmt.Sprintf("uid %d has %d connections to the agent open, the limit per user; close some (aigate watch, aigate run) and try again", peer.UID, a.cfg.MaxConnsPerUser)}
		}
		if a.userConns >= a.cfg.MaxConns {
			return &api.Error{Code: api.CodeLimit, Message: fmt.Sprintf("the agent has %d connections of users open, its limit; try again", a.cfg.MaxConns)}
		}
		a.perUser[peer.UID]++
		a.userConns++
	}
	a.conns[nc] = struct{}{}
	return nil
}

func (a *Agent) release(nc net.Conn, peer api.Peer) {
	nc.Close()
	peer.Close()
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.conns, nc)
	if !peer.Root() {
		a.userConns--
		if a.perUser[peer.UID]--; a.perUser[peer.UID] == 0 {
			delete(a.perUser, peer.UID)
		}
	}
}

func (a *Agent) refuse(nc *net.UnixConn, e *api.Error) {
	c := api.NewConn(nc)
	_ = c.Write(&api.Response{Error: e}, responseTimeout)
	c.Close()
}

// Close stops accepting, ends every sandbox (killing what runs in it:
// without the agent nothing would enforce its policy), closes the
// connections and the backend. It is idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		<-a.closed
		return nil
	}
	a.closing = true
	boxes := make([]*box, 0, len(a.boxes))
	for _, b := range a.boxes {
		boxes = append(boxes, b)
	}
	a.mu.Unlock()

	var errs []error
	if err := a.ln.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close socket: %w", err))
	}
	for _, b := range boxes {
		if err := a.end(b, "agent_shutdown"); err != nil {
			errs = append(errs, err)
		}
	}
	// Sessions have had their Ended message queued; give them a moment to
	// send it before their connections go.
	waitTimeout(&a.wg, time.Second)
	a.mu.Lock()
	for nc := range a.conns {
		nc.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
	a.empty.close()
	a.ide.close()
	a.stopLandlockAudit()
	if err := a.be.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close %s backend: %w", a.be.Name(), err))
	}
	<-a.pumpDone
	close(a.closed)
	return errors.Join(errs...)
}

// Drain stops taking new clients (the socket is removed, so the next
// `aigate run` or agent starts afresh) and waits until every sandbox has
// ended or ctx is done; then it closes the agent, ending what is left.
// `aigate run` drains the agent it embeds: sandboxes that other runs
// created through it are not killed when its own command exits.
func (a *Agent) Drain(ctx context.Context) error {
	if err := a.ln.Close(); err != nil {
		a.log.Warn("close socket", zap.Error(err))
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for a.sandboxCount() > 0 {
		select {
		case <-ctx.Done():
			return a.Close()
		case <-tick.C:
		}
	}
	return a.Close()
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// pump attributes each backend event to its sandbox, names it, and hands
// it on. Backends emit events as the kernel (or their own check) reported
// them; this is the one place that fills the sandbox's name, the rule as
// the user wrote it, and the domain a network address was resolved for.
func (a *Agent) pump() {
	defer close(a.pumpDone)
	evs := a.be.Events()
	if evs == nil {
		return
	}
	for e := range evs {
		if e.Refused != nil {
			a.judgeRefused(e)
		} else {
			a.handle(e)
		}
		a.pumped.Add(1)
	}
}

// handle names one event and hands it on; the pump calls it for the
// backend's events, the Landlock audit reader (landlockaudit.go) for the
// refusals the kernel reported to audit.
func (a *Agent) handle(e events.Event) {
	a.mu.Lock()
	b := a.boxes[e.Sandbox]
	if b == nil {
		b = a.byCgroup[e.CgroupID]
	}
	a.mu.Unlock()
	var owner uint32
	if b != nil {
		Name(&e, b.info.Name, b.compiled)
		nameIDE(&e, b)
		owner = b.info.Owner
	}
	if domains, ok := a.be.(enforce.DomainNamer); ok && e.Kind == events.KindNet && e.Domain == "" && e.Addr.IsValid() {
		e.Domain = domains.DomainOf(e.CgroupID, e.Addr.Addr())
	}
	if e.Backend == "" {
		e.Backend = a.be.Name()
	}
	// Quiet refusals are taken off the backend's counters; Landlock's
	// are in none of them (counted apart, landlockaudit.go).
	if e.Backend != llaudit.Backend && unreachableUnix(&e, a.ownUnix) {
		a.quiet.add(&e)
		return
	}
	if b != nil {
		b.events.Add(e.N())
	}
	a.fan.publish(e, owner, b != nil)
}

// stats is the backend's counters without the refusals that reached no
// socket (unreachable.go).
func (a *Agent) stats() (enforce.Stats, error) {
	st, err := a.be.Stats()
	if err != nil {
		return st, err
	}
	// Every refusal in st has its event produced already; once the pump
	// has taken those, each quiet one among them is known, and none is
	// reported as a violation by a scrape that came between the kernel's
	// count and the pump (a counter must never go down afterwards).
	if f, ok := a.be.(enforce.Flusher); ok {
		ctx, cancel := context.WithTimeout(context.Background(), statsFlushMax)
		if n, err := f.Flush(ctx); err == nil {
			_ = enforce.AwaitCount(ctx, a.pumped.Load, n)
		}
		cancel()
	}
	return a.quiet.adjust(st), nil
}

// statsFlushMax bounds how long a scrape waits for the events behind the
// counters it read.
const statsFlushMax = 200 * time.Millisecond

// SandboxCount is how many sandboxes the agent runs.
func (a *Agent) SandboxCount() int { return a.sandboxCount() }

func (a *Agent) sandboxCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.boxes)
}

func (a *Agent) ruleCounts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int)
	for _, b := range a.boxes {
		for k, n := range b.rules {
			out[k] += n
		}
	}
	return out
}

// refuseInside answers a request that only a process outside every
// sandbox may make: nil when the peer is outside, else the refusal, with
// msg when it is inside. A peer whose place cannot be read, or that is no
// longer the process that connected, is refused too (fail closed).
func (a *Agent) refuseInside(p api.Peer, msg string) *api.Error {
	in, err := a.sandboxed(p.PID)
	if err == nil {
		// Only now is it known that what was read was the peer's own
		// cgroup, and not that of a process that got its pid.
		err = p.Verify()
	}
	switch {
	case err != nil:
		return &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("refused: the agent cannot tell whether the request comes from inside a sandbox (%v)", err)}
	case in:
		return &api.Error{Code: api.CodeForbidden, Message: msg}
	}
	return nil
}

// sandboxed reports whether pid runs inside one of the agent's sandboxes
// (or a cgroup below one).
func (a *Agent) sandboxed(pid int) (bool, error) {
	cg, err := cgroup.ProcessCgroup(pid)
	if err != nil {
		return false, err
	}
	// Below this agent's parent, or the default one: a peer in a sandbox
	// of another agent (an embedded one of `sudo aigate run`) is no more
	// outside than one of ours.
	for _, p := range []string{a.cfg.Parent, sandbox.DefaultParent} {
		parent := "/" + strings.Trim(p, "/")
		if cg != parent && cgroup.Within(cg, parent) {
			return true, nil
		}
	}
	return false, nil
}
