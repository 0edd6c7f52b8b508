//go:build linux || darwin

package run

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
)

// Where run's event lines go, so that they never garble the command's
// output (docs/run.md, "Event lines and the command's screen"):
//
//   - stderr is a terminal: the screen belongs to the command (a
//     full-screen program redraws it; a line-mode one writes in pieces).
//     Nothing is written to it while the command runs: the lines are kept
//     and printed when it ends, before the summary, and `aigate watch`
//     shows them live (deferredLines).
//   - stderr is a pipe or a file: the command's stderr (and its stdout,
//     when that is the same file) pass through aigate, which writes its own
//     lines only where the command's output is at a line start
//     (lineJoiner).

// maxDeferred bounds what deferredLines keeps (repeats are already folded
// by the printer); the rest is counted and pointed to.
const maxDeferred = 256 << 10

// deferredLines keeps aigate's lines while the command owns the terminal.
type deferredLines struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	dropped int // lines not kept
}

func (d *deferredLines) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.buf.Len()+len(p) > maxDeferred {
		d.dropped += bytes.Count(p, []byte("\n"))
		return len(p), nil
	}
	return d.buf.Write(p)
}

// take returns what was kept, and a line for what was not, and empties it.
func (d *deferredLines) take() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := append([]byte(nil), d.buf.Bytes()...)
	if d.dropped > 0 {
		b = fmt.Appendf(b, "%s%d more lines not kept here: --events FILE or `aigate watch` has every event\n", events.Prefix, d.dropped)
	}
	d.buf.Reset()
	d.dropped = 0
	return b
}

// lineJoiner writes the command's output stream and aigate's own lines to
// one writer, aigate's only at line boundaries of the command's stream.
type lineJoiner struct {
	mu   sync.Mutex
	w    io.Writer
	mid  bool   // the command's stream has an unfinished line
	held []byte // aigate's lines waiting for that line to end

	readers   []*os.File
	childEnds []*os.File
	copies    sync.WaitGroup
}

// commandWriter is the side of a lineJoiner the command's output reaches.
type commandWriter struct{ j *lineJoiner }

func (c commandWriter) Write(p []byte) (int, error) {
	j := c.j
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if i := bytes.IndexByte(p, '\n'); i >= 0 && len(j.held) > 0 {
		if _, err := j.w.Write(p[:i+1]); err != nil {
			return 0, err
		}
		if _, err := j.w.Write(j.held); err != nil {
			return 0, err
		}
		j.held = nil
		p = p[i+1:]
		if len(p) == 0 {
			j.mid = false
			return i + 1, nil
		}
		n, err := j.w.Write(p)
		j.mid = p[len(p)-1] != '\n'
		return i + 1 + n, err
	}
	n, err := j.w.Write(p)
	j.mid = p[len(p)-1] != '\n'
	return n, err
}

// Write is aigate's side: whole lines, written now when the command's
// stream is at a line start, else held until it is.
func (j *lineJoiner) Write(p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mid {
		j.held = append(j.held, p...)
		return len(p), nil
	}
	return j.w.Write(p)
}

// newLineJoiner returns a joiner onto errOut and the files the command
// gets as stdout and stderr: a pipe for stderr, also used as stdout when
// stdout is the same file as errOut (so the two stay in order), else out.
func newLineJoiner(out, errOut *os.File) (*lineJoiner, *os.File, *os.File, error) {
	j := &lineJoiner{w: errOut}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	j.readers, j.childEnds = append(j.readers, r), append(j.childEnds, w)
	j.copies.Add(1)
	go func() {
		defer j.copies.Done()
		_, _ = io.Copy(commandWriter{j}, r)
	}()
	stdout := out
	if sameFile(out, errOut) {
		stdout = w
	}
	return j, stdout, w, nil
}

// started closes aigate's copies of the command's ends.
func (j *lineJoiner) started() {
	for _, f := range j.childEnds {
		_ = f.Close()
	}
	j.childEnds = nil
}

// finish waits (bounded) for the command's last output, then writes the
// lines still held, on a line of their own.
func (j *lineJoiner) finish() {
	j.started()
	done := make(chan struct{})
	go func() { j.copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		for _, r := range j.readers {
			_ = r.Close()
		}
		<-done
	}
	for _, r := range j.readers {
		_ = r.Close()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.held) > 0 {
		if j.mid {
			_, _ = j.w.Write([]byte("\n"))
		}
		_, _ = j.w.Write(j.held)
		j.held = nil
	}
	j.mid = false
}

// sameFile reports whether a and b are the same open file (2>&1).
func sameFile(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	if unix.Fstat(int(a.Fd()), &sa) != nil || unix.Fstat(int(b.Fd()), &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}
