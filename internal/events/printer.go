package events

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Defaults for Printer. A tool that trips a rule in a loop (a language
// server scanning the tree, a retrying HTTP client) must not bury its own
// output under aigate's lines: after a burst, lines are rationed and
// identical denials are folded into one "(repeated N times)" line.
const (
	DefaultWindow = 2 * time.Second
	DefaultRate   = 5 // lines per second, sustained
	DefaultBurst  = 20
	// maxTracked bounds the de-duplication table, so that a process that
	// opens millions of distinct denied paths cannot grow aigate's memory.
	maxTracked = 4096
	// maxPids bounds the processes a series tells apart, for the same
	// reason: past it a repeat line says "by more than maxPids processes".
	maxPids = 32
)

// PrinterOptions configure a Printer. Zero values select the defaults.
type PrinterOptions struct {
	Style  Style
	Window time.Duration // identical events within Window are folded
	Rate   float64       // lines per second once Burst is spent
	Burst  int
	Now    func() time.Time // the clock, replaced by tests
}

// Printer writes events for humans, one line each, de-duplicated and
// rate-limited. Events are identical when operation, target, process name and
// audit flag agree. The first of a series is printed at once; repeats within
// the window are counted and reported by Flush when the window has passed.
// Printer is safe for concurrent use.
type Printer struct {
	w    io.Writer
	opts PrinterOptions

	mu   sync.Mutex
	seen map[dedupKey]*series
	// tokens ration the lines of the backend's denials, llTokens those of
	// Landlock's refusals (Backend BackendLandlock): a tool that keeps
	// failing on its own state in the read-only home (Claude Code's lock
	// and temporary files there) must not use up the lines that show an
	// attack, nor the other way round.
	tokens, llTokens float64
	last             time.Time // when tokens were last refilled
	suppressed       uint64    // events not printed because of the rate limit
}

type dedupKey struct {
	op     Op
	target string
	comm   string
	audit  bool
}

type series struct {
	first   Event
	until   time.Time
	repeats uint64
	printed bool // the first line was printed (not rate-limited)
	// pids are the processes the repeats came from (at most maxPids;
	// morePids when there were others), so that the repeat line names
	// the first process only when the repeats were all its own.
	pids     map[uint32]struct{}
	morePids bool
}

// repeat counts n repeats by process pid.
func (s *series) repeat(pid uint32, n uint64) {
	s.repeats += n
	if _, ok := s.pids[pid]; ok {
		return
	}
	if s.pids == nil {
		s.pids = make(map[uint32]struct{}, 1)
	}
	if len(s.pids) >= maxPids {
		s.morePids = true
		return
	}
	s.pids[pid] = struct{}{}
}

// byOthers reports whether some repeat came from another process than
// the first event's.
func (s *series) byOthers() bool {
	if s.morePids || len(s.pids) > 1 {
		return true
	}
	_, own := s.pids[procID(s.first)]
	return len(s.pids) == 1 && !own
}

// procID is the process id details prints: the thread group, else the
// thread; 0 when the backend could not tell.
func procID(e Event) uint32 {
	if e.TGID != 0 {
		return e.TGID
	}
	return e.PID
}

// NewPrinter returns a printer writing to w.
func NewPrinter(w io.Writer, opts PrinterOptions) *Printer {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.Rate <= 0 {
		opts.Rate = DefaultRate
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Printer{
		w:        w,
		opts:     opts,
		seen:     make(map[dedupKey]*series),
		tokens:   float64(opts.Burst),
		llTokens: float64(opts.Burst),
		last:     opts.Now(),
	}
}

// Print reports one event: it prints it, counts it as a repeat, or counts it
// as suppressed by the rate limit.
func (p *Printer) Print(e Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.opts.Now()
	p.refill(now)
	k := dedupKey{op: e.Op, target: target(e), comm: e.Comm, audit: e.Audit}
	n := e.N() // a folded event counts as its denials
	if s, ok := p.seen[k]; ok {
		if now.Before(s.until) {
			if s.printed {
				s.repeat(procID(e), n)
			} else {
				p.suppressed += n
			}
			return
		}
		p.finish(k, s)
	}
	if len(p.seen) >= maxTracked {
		p.expire(now, false)
	}
	s := &series{first: e, until: now.Add(p.opts.Window)}
	if p.take(e.Backend == BackendLandlock) {
		s.printed = true
		if n > 1 {
			s.repeat(procID(e), n-1) // a folded event is one process's
		}
		p.writeLine(p.opts.Style.Line(e))
	} else {
		p.suppressed += n
	}
	switch {
	case len(p.seen) < maxTracked:
		p.seen[k] = s
	case s.repeats > 0:
		p.finish(k, s) // not tracked: say its repeats now
	}
}

// Flush prints the repeat counts of series whose window has passed and, when
// the rate limit allows again, how many lines it held back. The caller
// invokes it periodically (about once per window); final at exit prints
// everything still pending.
func (p *Printer) Flush(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.opts.Now()
	p.refill(now)
	p.expire(now, final)
	if p.suppressed > 0 && (final || p.take(false)) {
		p.writeLine(fmt.Sprintf("%d more blocked operations not shown (too many to print; the summary counts them all, --events FILE records each)", p.suppressed))
		p.suppressed = 0
	}
}

// expire finishes every series whose window has passed, or all of them.
func (p *Printer) expire(now time.Time, all bool) {
	for k, s := range p.seen {
		if all || !now.Before(s.until) {
			p.finish(k, s)
		}
	}
}

func (p *Printer) finish(k dedupKey, s *series) {
	delete(p.seen, k)
	if s.repeats == 0 {
		return
	}
	times := "times"
	if s.repeats == 1 {
		times = "time"
	}
	// A repeat line summarises a line already shown, so it does not
	// spend a token: one per series and window at most. Repeats by other
	// processes (3,000 `cat .env`, each a new process) are not the first
	// process's: the line then names none and says how many there were.
	if !s.byOthers() {
		p.writeLine(fmt.Sprintf("%s (repeated %d more %s)", p.opts.Style.Line(s.first), s.repeats, times))
		return
	}
	e := s.first
	e.TGID, e.PID = 0, 0
	var by string
	switch {
	case s.morePids:
		by = fmt.Sprintf("by more than %d processes", maxPids)
	case len(s.pids) == 1:
		for pid := range s.pids {
			by = fmt.Sprintf("by pid %d", pid)
		}
	default:
		by = fmt.Sprintf("by %d processes", len(s.pids))
	}
	p.writeLine(fmt.Sprintf("%s (repeated %d more %s %s)", p.opts.Style.Line(e), s.repeats, times, by))
}

func (p *Printer) refill(now time.Time) {
	if d := now.Sub(p.last); d > 0 {
		p.tokens = min(float64(p.opts.Burst), p.tokens+d.Seconds()*p.opts.Rate)
		p.llTokens = min(float64(p.opts.Burst), p.llTokens+d.Seconds()*p.opts.Rate)
		p.last = now
	}
}

// take spends a line of the backend's budget, or of Landlock's.
func (p *Printer) take(landlock bool) bool {
	t := &p.tokens
	if landlock {
		t = &p.llTokens
	}
	if *t < 1 {
		return false
	}
	*t--
	return true
}

// writeLine ignores write errors: a closed terminal must not stop aigate
// from enforcing and cleaning up, and the summary and --events still count.
func (p *Printer) writeLine(s string) {
	_, _ = io.WriteString(p.w, Prefix+s+"\n")
}
