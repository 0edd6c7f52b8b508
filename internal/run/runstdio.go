//go:build linux || darwin

package run

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/mask"
	"github.com/aigate-dev/aigate/internal/termfilter"
)

// drainTimeout bounds how long run waits, once the command and the
// sandbox are gone, for the last of its output.
const drainTimeout = 2 * time.Second

// runStdio is how the command's stdio are connected when something must
// pass between it and aigate's streams: the policy masks output
// (mask_output), or a stream is a terminal, whose escape sequences are
// filtered (package termfilter: clipboard writes, reports that type
// text back into the terminal). With neither (no masking, no terminal,
// or --raw-terminal) the command gets aigate's own stdio and none of
// this runs.
//
// When stdout is a terminal (Linux) the command gets a pseudo-terminal
// (runpty_linux.go) whose output reaches the real one filtered (and
// masked). Otherwise each output stream that must be masked or filtered
// gets a pipe whose reader does so on its way to aigate's stream; stdin
// is the command's as before.
type runStdio struct {
	// What the command gets.
	Stdin          io.Reader
	Stdout, Stderr *os.File
	// Ctty: the pty's slave, the command's descriptor CttyFD, must be
	// made its controlling terminal (Setsid, Setctty).
	Ctty   bool
	CttyFD int

	childEnds []*os.File // closed in aigate once the command started
	readers   []*os.File // aigate's ends, closed when draining times out
	writers   []outWriter
	copies    sync.WaitGroup
	term      *ptyTerm // nil on pipes
	lines     *lineWriter
	dropped   atomic.Uint32 // a bit per termfilter.Kind dropped
}

// stdioOptions say what newRunStdio may do.
type stdioOptions struct {
	pty    bool // a pseudo-terminal when stdout is a terminal (Linux)
	filter bool // what reaches a terminal passes termfilter
}

// outWriter is one output stream's way to aigate's: masking and
// filtering hold bytes, written by Flush and Close.
type outWriter interface {
	io.Writer
	Flush() error
	Close() error
}

// newRunStdio connects the command's stdio through masking writers
// (m nil: none) and terminal filters; lines is where aigate's own lines
// go meanwhile.
func newRunStdio(f *cmdutil.Factory, m *mask.Matcher, lines *lineWriter, o stdioOptions) (*runStdio, error) {
	s := &runStdio{Stdin: f.In, lines: lines}
	if o.pty && isTerminal(f.Out) {
		t, err := openPTY(f, m, s, o.filter)
		if err != nil {
			return nil, err
		}
		s.term = t
		if isTerminal(f.Err) {
			s.Stderr = s.Stdout
			return s, nil
		}
	}
	var err error
	if s.Stdout == nil {
		if s.Stdout, err = s.outPipe(f.Out, m, o.filter && isTerminal(f.Out)); err != nil {
			s.abort()
			return nil, err
		}
	}
	if s.Stderr, err = s.outPipe(f.Err, m, o.filter && isTerminal(f.Err)); err != nil {
		s.abort()
		return nil, err
	}
	return s, nil
}

// outPipe returns the command's end of an output stream to w: w itself
// when it is a file and nothing is done on the way, else the write end of
// a pipe whose contents reach w filtered and masked, with the marker
// (pipes usually end in a log).
func (s *runStdio) outPipe(w io.Writer, m *mask.Matcher, filter bool) (*os.File, error) {
	if file, ok := w.(*os.File); ok && m == nil && !filter {
		return file, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("command output: %w", err)
	}
	s.copy(r, s.output(w, m, filter, mask.Marker))
	s.childEnds = append(s.childEnds, pw)
	return pw, nil
}

// output is the writer an output stream passes on its way to w: the
// terminal filter first (it judges the command's own bytes), then the
// masker, whose replacements hold no escape byte.
func (s *runStdio) output(w io.Writer, m *mask.Matcher, filter bool, repl string) outWriter {
	var out outWriter = plainOut{w}
	if m != nil {
		out = mask.NewWriter(w, m, mask.Options{Replacement: repl})
	}
	if filter {
		out = &filteredOut{Filter: termfilter.New(out, s.noteDrop), next: out}
	}
	return out
}

// noteDrop records a kind of sequence the filter dropped, reported once
// the command has ended (report).
func (s *runStdio) noteDrop(k termfilter.Kind) {
	s.dropped.Or(1 << k)
}

// report says, once per kind and run, what the filter dropped.
func (s *runStdio) report() {
	bits := s.dropped.Swap(0)
	for k := termfilter.Kind(0); bits != 0; k++ {
		if bits&(1<<k) != 0 {
			fmt.Fprintf(s.lines, "%sdropped %s that the sandboxed command wrote to the terminal (docs/run.md, \"The terminal filter\")\n", events.Prefix, k)
			bits &^= 1 << k
		}
	}
}

type plainOut struct{ io.Writer }

func (plainOut) Flush() error { return nil }
func (plainOut) Close() error { return nil }

type filteredOut struct {
	*termfilter.Filter
	next outWriter
}

func (o *filteredOut) Flush() error { return o.next.Flush() }

func (o *filteredOut) Close() error {
	err := o.Filter.Close()
	if cerr := o.next.Close(); err == nil {
		err = cerr
	}
	return err
}

// copy moves what r reads to w in the background.
func (s *runStdio) copy(r *os.File, w outWriter) {
	s.readers = append(s.readers, r)
	s.writers = append(s.writers, w)
	s.copies.Add(1)
	go func() {
		defer s.copies.Done()
		_, _ = io.Copy(w, r)
		_ = w.Flush()
	}()
}

// begin starts what a pty needs from the real terminal (raw mode, what
// is typed) just before the command starts: until then the terminal is
// left as it is, for a question run may ask on it.
func (s *runStdio) begin() error {
	if s.term == nil {
		return nil
	}
	return s.term.activate()
}

// started closes aigate's copies of the command's ends, so that the
// readers see the end of the output when the command and what it left
// are gone, and starts what a pty needs once the command runs.
// keepRunning makes a pty's Ctrl-Z stop nothing (ptyTerm.noStop): the
// run embeds the fanotify agent, which must go on answering the kernel.
func (s *runStdio) keepRunning() {
	if s.term != nil {
		s.term.keepRunning()
	}
}

func (s *runStdio) started(pid int) {
	for _, f := range s.childEnds {
		_ = f.Close()
	}
	s.childEnds = nil
	if s.term != nil {
		s.term.started(pid)
	}
}

// finish waits (bounded) for the last output, writes what the masks hold
// and gives the terminal its mode back. Call it once the sandbox is gone,
// whatever happened before.
func (s *runStdio) finish() {
	for _, f := range s.childEnds {
		_ = f.Close()
	}
	done := make(chan struct{})
	go func() { s.copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		for _, r := range s.readers {
			_ = r.Close()
		}
		<-done
	}
	for _, r := range s.readers {
		_ = r.Close()
	}
	for _, w := range s.writers {
		_ = w.Close()
	}
	if s.term != nil {
		s.term.restore()
	}
	s.lines.raw.Store(false)
	s.report()
}

// abort undoes newRunStdio after a failure.
func (s *runStdio) abort() {
	s.finish()
}

// announce says once that masking is on.
func (s *runStdio) announce(f *cmdutil.Factory, n int) {
	how := "pipes"
	if s.term != nil {
		how = "a pseudo-terminal"
	}
	fmt.Fprintf(s.lines, "%soutput masking is on (%d mask_output expressions): the command's output passes through %s\n", events.Prefix, n, how)
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// errNoPTY is returned by openPTY where run has no pty mode.
var errNoPTY = errors.New("no pseudo-terminal mode on this system")
