//go:build linux || darwin

package run

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/mask"
)

// drainTimeout bounds how long run waits, once the command and the
// sandbox are gone, for the last of its output.
const drainTimeout = 2 * time.Second

// runStdio is how the command's stdio are connected when the policy masks
// output (mask_output). Without masking the command gets aigate's own
// stdin, stdout and stderr and none of this runs.
//
// On pipes (stdout or stderr not a terminal, or macOS) each output stream
// gets a pipe whose reader masks on its way to aigate's stream; stdin is
// the command's as before. On a terminal (Linux) the command gets a
// pseudo-terminal (runpty_linux.go).
type runStdio struct {
	// What the command gets.
	Stdin          io.Reader
	Stdout, Stderr *os.File
	// Ctty: Stdin is a pty's slave, which the command must make its
	// controlling terminal (Setsid, Setctty).
	Ctty bool

	childEnds []*os.File // closed in aigate once the command started
	readers   []*os.File // aigate's ends, closed when draining times out
	writers   []*mask.Writer
	copies    sync.WaitGroup
	term      *ptyTerm // nil on pipes
	lines     *lineWriter
}

// newRunStdio connects the command's stdio through masking writers;
// lines is where aigate's own lines go meanwhile. pty asks for a
// pseudo-terminal when stdin and stdout are terminals.
func newRunStdio(f *cmdutil.Factory, m *mask.Matcher, lines *lineWriter, pty bool) (*runStdio, error) {
	s := &runStdio{Stdin: f.In, lines: lines}
	if pty && isTerminal(f.In) && isTerminal(f.Out) {
		t, err := openPTY(f, m, s)
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
		if s.Stdout, err = s.maskPipe(f.Out, m); err != nil {
			s.abort()
			return nil, err
		}
	}
	if s.Stderr, err = s.maskPipe(f.Err, m); err != nil {
		s.abort()
		return nil, err
	}
	return s, nil
}

// maskPipe returns the write end of a pipe whose contents reach w masked,
// with the marker (pipes usually end in a log).
func (s *runStdio) maskPipe(w io.Writer, m *mask.Matcher) (*os.File, error) {
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("masked output: %w", err)
	}
	mw := mask.NewWriter(w, m, mask.Options{Replacement: mask.Marker})
	s.copy(r, mw)
	s.childEnds = append(s.childEnds, pw)
	return pw, nil
}

// copy moves what r reads to mw in the background.
func (s *runStdio) copy(r *os.File, mw *mask.Writer) {
	s.readers = append(s.readers, r)
	s.writers = append(s.writers, mw)
	s.copies.Add(1)
	go func() {
		defer s.copies.Done()
		_, _ = io.Copy(mw, r)
		_ = mw.Flush()
	}()
}

// started closes aigate's copies of the command's ends, so that the
// readers see the end of the output when the command and what it left
// are gone, and starts what a pty needs once the command runs.
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
