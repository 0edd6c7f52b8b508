package mask

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	// Marker is what Options.Replacement usually is where output is kept
	// (pipes, logs): it says what happened and is easy to grep for.
	Marker = "[masked by aigate]"
	// DefaultMaxLen is the longest secret masked for certain when it is
	// split over writes. A longer match is masked in pieces when it
	// arrives in one write, but a part of it may pass unmasked when it
	// is split.
	DefaultMaxLen = 512
	// DefaultDelay bounds how long text that might begin a secret is held
	// back waiting for the rest (a prompt ending in "sk-" waits this long).
	DefaultDelay = 50 * time.Millisecond
	// maxMatch is the longest match found in text that arrived in one
	// piece; a longer one is masked up to there.
	maxMatch = 8 << 10
	// maxHeld bounds the bytes held back, escape sequences included.
	maxHeld = 64 << 10
)

// Matcher is a set of expressions compiled for masking.
type Matcher struct {
	re   *regexp.Regexp // the expressions as one alternation, leftmost-first
	prog *syntax.Prog
	// When every expression begins with a literal (sk-, AKIA, ghp_),
	// matches can only start where one of them occurs: bytes.Index
	// finds those far faster than the regexp scans, and at each the
	// anchored form decides. nil prefixes means scanning with re.
	prefixes [][]byte
	anchored *regexp.Regexp
}

// Compile combines the expressions (policy.Compiled.Mask). It returns nil
// for none. Expressions that match the empty string are refused: they
// would mask nothing and hold nothing back usefully.
func Compile(res []*regexp.Regexp) (*Matcher, error) {
	if len(res) == 0 {
		return nil, nil
	}
	parts := make([]string, len(res))
	for i, re := range res {
		if re.MatchString("") {
			return nil, fmt.Errorf("mask expression %q matches the empty string", re.String())
		}
		parts[i] = "(?:" + re.String() + ")"
	}
	src := strings.Join(parts, "|")
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("combine mask expressions: %w", err)
	}
	parsed, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("combine mask expressions: %w", err)
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return nil, fmt.Errorf("combine mask expressions: %w", err)
	}
	m := &Matcher{re: re, prog: prog}
	for _, re := range res {
		// A prefix behind an assertion (\bAKIA) is not reported, so
		// the anchored form never needs the rune before it.
		p, _ := re.LiteralPrefix()
		if p == "" {
			m.prefixes = nil
			break
		}
		m.prefixes = append(m.prefixes, []byte(p))
	}
	if m.prefixes != nil {
		m.anchored = regexp.MustCompile("^(?:" + src + ")")
	}
	return m, nil
}

// candidates returns where in text[from:] a match could start, sorted:
// where a prefix occurs, or where text ends in the first bytes of one.
// It returns nil when any position could.
func (m *Matcher) candidates(text []byte, from int, buf *[]int) []int {
	if m.prefixes == nil {
		return nil
	}
	c := (*buf)[:0]
	for _, p := range m.prefixes {
		for i := from; i < len(text); {
			j := bytes.Index(text[i:], p)
			if j < 0 {
				break
			}
			c = append(c, i+j)
			i += j + 1
		}
		for k := max(from, len(text)-len(p)+1); k < len(text); k++ {
			if bytes.HasPrefix(p, text[k:]) {
				c = append(c, k)
			}
		}
	}
	slices.Sort(c)
	c = slices.Compact(c)
	*buf = c
	if c == nil {
		c = []int{} // not nil: no position can start a match
	}
	return c
}

// matchAt returns the match that starts at c, if any. Go's backtracker
// clears state in proportion to its input at every call, so a short piece
// is tried first, and the rest only when the match could go on past it
// (l says whether any thread from c is still running there).
func (m *Matcher) matchAt(l *live, text []byte, c int) []int {
	const short = 128
	end := min(len(text), c+short)
	loc := m.anchored.FindIndex(text[c:end])
	if end == len(text) {
		return loc
	}
	prev := rune(-1)
	if c > 0 {
		prev, _ = utf8.DecodeLastRune(text[:c])
	}
	if len(l.open(text[:end], c, prev, short, []int{c})) == 0 {
		return loc
	}
	return m.anchored.FindIndex(text[c:min(len(text), c+maxMatch)])
}

// findAll returns the leftmost-first, non-overlapping matches in text, as
// re.FindAllIndex would.
func (m *Matcher) findAll(l *live, text []byte, found [][2]int) [][2]int {
	found = found[:0]
	if m.prefixes == nil {
		for _, loc := range m.re.FindAllIndex(text, -1) {
			found = append(found, [2]int{loc[0], loc[1]})
		}
		return found
	}
	next := make([]int, len(m.prefixes)) // where each prefix occurs next, -1 for nowhere
	for i := range next {
		next[i] = -2
	}
	for pos := 0; pos < len(text); {
		c := -1
		for i, p := range m.prefixes {
			if next[i] == -1 {
				continue
			}
			if next[i] < pos {
				j := bytes.Index(text[pos:], p)
				if j < 0 {
					next[i] = -1
					continue
				}
				next[i] = pos + j
			}
			if c < 0 || next[i] < c {
				c = next[i]
			}
		}
		if c < 0 {
			break
		}
		if loc := m.matchAt(l, text, c); loc != nil {
			found = append(found, [2]int{c, c + loc[1]})
			pos = c + loc[1]
		} else {
			pos = c + 1
		}
	}
	return found
}

// Options configure a Writer.
type Options struct {
	// Replacement is written in place of each match. Empty means one '*'
	// per character of the match, which keeps the width of an ASCII
	// secret: on a terminal, full-screen programs place text by
	// counting columns, and a shorter or longer line would misplace
	// everything after it.
	Replacement string
	// MaxLen is the longest secret, in bytes, that is masked even when
	// split over writes (DefaultMaxLen when 0).
	MaxLen int
	// Delay is how long text that could begin a secret is held before it
	// is written anyway (DefaultDelay when 0; negative: held until more
	// input decides it or Flush).
	Delay time.Duration
}

// Writer masks what is written to it and passes the rest through to the
// underlying writer in order. Text is held back only while it could still
// be the beginning of a match: the rest of each Write goes out at once, in
// one Write to the underlying writer. Held text is written, masked as far
// as it is known, by Flush, by Close, or when it has waited Delay.
//
// Escape sequences pass through unchanged; the expressions are matched
// against the text between them, so a secret coloured in two halves is
// still found. ^, $ and \b at the edges of held text see only that text.
// Writer is safe for concurrent use.
type Writer struct {
	w    io.Writer
	m    *Matcher
	opts Options

	mu     sync.Mutex
	live   *live
	held   []byte  // raw bytes not yet written
	sc     scanner // the parser's state before held[0]
	prev   rune    // the last text rune before held, -1 at the start
	out    []byte
	text   []byte // scratch: the text of held
	where  []at   // scratch: for each byte of text, its place in held
	found  [][2]int
	cands  []int
	timer  *time.Timer
	err    error // the first write error, returned from then on
	closed bool
}

type at struct {
	i  int
	sc scanner // the parser's state before this byte
}

// NewWriter returns a Writer masking m's matches on their way to w.
func NewWriter(w io.Writer, m *Matcher, opts Options) *Writer {
	if opts.MaxLen <= 0 {
		opts.MaxLen = DefaultMaxLen
	}
	if opts.Delay == 0 {
		opts.Delay = DefaultDelay
	}
	return &Writer{w: w, m: m, opts: opts, live: newLive(m.prog), prev: -1}
}

// ErrClosed is returned by writes to a closed Writer.
var ErrClosed = errors.New("mask: write to a closed writer")

// Write masks p, writes what is decided and holds back the rest. It
// reports all of p as written unless an earlier write failed.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	w.held = append(w.held, p...)
	w.emit(len(w.held) > maxHeld)
	if len(w.held) > 0 && w.timer == nil && w.opts.Delay > 0 {
		w.timer = time.AfterFunc(w.opts.Delay, w.expire)
	}
	return len(p), w.err
}

// expire writes out what waited Delay.
func (w *Writer) expire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = nil
	if !w.closed && w.err == nil && len(w.held) > 0 {
		w.emit(true)
	}
}

// Flush writes everything held, masking the matches it holds.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && !w.closed {
		w.emit(true)
	}
	return w.err
}

// Close flushes and stops the writer; it does not close the underlying
// writer.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err
	}
	if w.err == nil {
		w.emit(true)
	}
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	return w.err
}

// emit writes the decided part of held (all of it when final), masked.
func (w *Writer) emit(final bool) {
	n := w.mask(final)
	if n == 0 && len(w.out) == 0 {
		return
	}
	rest := copy(w.held, w.held[n:])
	w.held = w.held[:rest]
	if len(w.held) == 0 && w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if len(w.out) > 0 {
		if _, err := w.w.Write(w.out); err != nil {
			w.err = err
		}
	}
}

// mask fills w.out with the masked form of the decided prefix of held and
// returns its length in held.
func (w *Writer) mask(final bool) int {
	w.out = w.out[:0]
	// The text and where each byte of it is.
	w.text, w.where = w.text[:0], w.where[:0]
	sc := w.sc
	for i := 0; i < len(w.held); {
		if sc.state == ground {
			// Plain text up to the next escape, in one go.
			j := bytes.IndexByte(w.held[i:], 0x1b)
			if j < 0 {
				j = len(w.held) - i
			}
			w.text = append(w.text, w.held[i:i+j]...)
			for k := i; k < i+j; k++ {
				w.where = append(w.where, at{k, sc})
			}
			if i += j; i == len(w.held) {
				break
			}
		}
		before := sc
		if sc.next(w.held[i]) {
			w.text = append(w.text, w.held[i])
			w.where = append(w.where, at{i, before})
		}
		i++
	}
	end := sc // the parser's state after held

	text := w.text
	n := len(text)
	if !final {
		// An incomplete rune at the end waits for its other bytes.
		n = completeRunes(text)
	}
	// The matches first: findAll uses the same machine as open.
	w.found = w.m.findAll(w.live, text[:n], w.found)
	var open []int
	if !final {
		from := 0
		if n > w.opts.MaxLen {
			from = n - w.opts.MaxLen
			for from < n && !utf8.RuneStart(text[from]) {
				from++
			}
		}
		prev := w.prev
		if from > 0 {
			prev, _ = utf8.DecodeLastRune(text[:from])
		}
		open = w.live.open(text[:n], from, prev, w.opts.MaxLen, w.m.candidates(text[:n], from, &w.cands))
	}
	open = append(open, n) // an incomplete rune is held too
	if final {
		open[len(open)-1] = len(text)
	}
	hold := func(pos int) int {
		for _, s := range open {
			if s >= pos {
				return s
			}
		}
		return len(text)
	}

	raw, pos := 0, 0 // how far held and text are written
	for _, m := range w.found {
		s, e := m[0], m[1]
		if s >= hold(pos) {
			break
		}
		w.out = append(w.out, w.held[raw:w.where[s].i]...)
		raw = w.where[s].i
		for j := s; j < e; j++ {
			w.out = append(w.out, w.held[raw:w.where[j].i]...) // escape sequences
			w.out = w.replace(w.out, text[j], j == s)
			raw = w.where[j].i + 1
		}
		pos = e
	}
	h := hold(pos)
	stop := len(w.held)
	if h < len(text) {
		stop = w.where[h].i
		w.sc = w.where[h].sc
	} else {
		w.sc = end
	}
	w.out = append(w.out, w.held[raw:stop]...)
	if h > 0 {
		w.prev, _ = utf8.DecodeLastRune(text[:h])
	}
	return stop
}

// replace appends the replacement for byte b of a match.
func (w *Writer) replace(out []byte, b byte, first bool) []byte {
	if w.opts.Replacement != "" {
		if first {
			out = append(out, w.opts.Replacement...)
		}
		return out
	}
	if utf8.RuneStart(b) {
		out = append(out, '*')
	}
	return out
}

// completeRunes is the length of the longest prefix of b that does not end
// in the middle of a UTF-8 sequence.
func completeRunes(b []byte) int {
	n := len(b)
	for k := 1; k <= utf8.UTFMax && k <= n; k++ {
		if utf8.RuneStart(b[n-k]) {
			if utf8.FullRune(b[n-k:]) {
				return n
			}
			return n - k
		}
	}
	return n
}

// Mask returns b with every match replaced, as a Writer would write it
// in one piece.
func (m *Matcher) Mask(b []byte, replacement string) []byte {
	var out writerBuf
	w := NewWriter(&out, m, Options{Replacement: replacement, Delay: -1})
	_, _ = w.Write(b)
	_ = w.Close()
	return out.b
}

type writerBuf struct{ b []byte }

func (w *writerBuf) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
