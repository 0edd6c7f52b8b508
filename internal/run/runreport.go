package run

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/mask"
)

// runReporter turns a run's events into lines on stderr (events.Printer,
// the one formatter), JSON lines (--events) and the summary at exit. It is
// the same on Linux and macOS; only where events come from differs.
type runReporter struct {
	f       *cmdutil.Factory
	quiet   bool
	printer *events.Printer
	json    *events.JSONWriter
	name    func(*events.Event)
	mu      sync.Mutex
	tally   events.Summary
	jsonErr error
	claude  bool // a write to Claude Code's protected state was refused
	undone  bool // the agent put back a change to ~/.claude.json
	mux     bool // a connect to a tmux or screen server was refused
	ssh     bool // claude's exec of ssh was refused
	// claudeDir is reportOptions.ClaudeDir.
	claudeDir string
}

// reportOptions configure a runReporter.
type reportOptions struct {
	Quiet bool
	JSON  io.Writer // --events, nil for none
	// Name names the events on macOS, where no agent does: agent.Name
	// with the session's sandbox and policy. nil: the agent named them.
	Name  func(*events.Event)
	Lines io.Writer // where lines go, f.Err when nil
	// ClaudeDir is Claude Code's state directory moved by
	// CLAUDE_CONFIG_DIR, "~/..." with a trailing "/" ("": none).
	ClaudeDir string
}

func newRunReporter(f *cmdutil.Factory, o reportOptions) *runReporter {
	r := &runReporter{f: f, quiet: o.Quiet, name: o.Name, claudeDir: o.ClaudeDir}
	if !o.Quiet {
		color := false
		if ef, ok := f.Err.(*os.File); ok {
			color = events.ColorFor(ef)
		}
		w := o.Lines
		if w == nil {
			w = f.Err
		}
		r.printer = events.NewPrinter(w, events.PrinterOptions{Style: events.Style{Color: color}})
	}
	if o.JSON != nil {
		r.json = events.NewJSONWriter(o.JSON)
	}
	return r
}

// event reports one event.
func (r *runReporter) event(e events.Event) {
	if r.name != nil {
		r.name(&e)
	}
	r.mu.Lock()
	r.tally.Add(e)
	r.claude = r.claude || claudeStateRule(e, r.claudeDir)
	r.undone = r.undone || e.Op == events.OpChange
	r.mux = r.mux || muxSocket(e)
	r.ssh = r.ssh || claudeSSH(e)
	if r.json != nil && r.jsonErr == nil {
		if err := r.json.Write(e); err != nil {
			r.jsonErr = err
			r.f.Warnf("%v: no more events are written to --events", err)
		}
	}
	r.mu.Unlock()
	if r.printer != nil {
		r.printer.Print(e)
	}
}

// pump reports the events from evs, and the repeat counts the printer
// holds as their windows pass, until evs is closed or stop is.
func (r *runReporter) pump(evs <-chan events.Event, stop <-chan struct{}) {
	tick := time.NewTicker(events.DefaultWindow / 2)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-evs:
			if !ok {
				return
			}
			r.event(e)
		case <-tick.C:
			if r.printer != nil {
				r.printer.Flush(false)
			}
		case <-stop:
			return
		}
	}
}

// start pumps in the background; done is closed when pump returns.
func (r *runReporter) start(evs <-chan events.Event, stop <-chan struct{}) (done <-chan struct{}) {
	d := make(chan struct{})
	go func() {
		defer close(d)
		r.pump(evs, stop)
	}()
	return d
}

// finish prints the pending repeat lines and the summary. The summary
// counts the events that arrived; attributed is how many the agent says
// were the sandbox's (0 when unknown), so that events lost on the way
// (dropped, or fewer arrived than were attributed) are said, not guessed
// at.
func (r *runReporter) finish(dropped, attributed, kernelDropped uint64) {
	if r.printer != nil {
		r.printer.Flush(true)
	}
	if r.quiet {
		return
	}
	r.mu.Lock()
	got := r.tally.Total()
	s := r.tally.String()
	claude, undone, mux, ssh := r.claude, r.undone, r.mux, r.ssh
	r.mu.Unlock()
	lost := dropped
	if attributed > got && attributed-got > lost {
		lost = attributed - got
	}
	if lost > 0 {
		r.f.Warnf("%d events were lost on the way (not printed or recorded); the summary counts only the others, the agent's metrics count all", lost)
	}
	if kernelDropped > 0 {
		r.f.Warnf("the kernel dropped %d events while the command ran (its buffer was full), of this sandbox or another: the summary may count fewer operations than were blocked; the agent's metrics (aigate_violations_total) count every one", kernelDropped)
	}
	if s != "" {
		for _, line := range strings.Split(s, "\n") {
			fmt.Fprintf(r.f.Err, "%s%s\n", events.Prefix, line)
		}
	}
	if claude {
		r.f.Warnf("%s", claudeStateHint)
	}
	if undone {
		r.f.Warnf("%s", claudeJSONHint)
	}
	if mux {
		r.f.Warnf("%s", muxHint)
	}
	if ssh {
		r.f.Warnf("%s", claudeSSHHint)
	}
}

// lineWriter is where aigate's own lines go while the command runs: masked
// too (an event's target or command line may hold a secret), and with
// "\r\n" line ends while the terminal is in raw mode for a pty, where a
// bare "\n" only moves the cursor down.
type lineWriter struct {
	w   io.Writer
	m   *mask.Matcher // nil: nothing to mask
	raw atomic.Bool
}

func (l *lineWriter) Write(p []byte) (int, error) {
	b := p
	if l.m != nil {
		b = l.m.Mask(b, mask.Marker)
	}
	if l.raw.Load() {
		b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	}
	if _, err := l.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}
