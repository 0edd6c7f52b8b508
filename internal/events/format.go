package events

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"
)

// ANSI sequences used when Style.Color is set. Only the verb is coloured, so
// that a line stays readable on terminals with unusual palettes.
const (
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[1;33m"
	ansiDim    = "\x1b[2m"
	ansiReset  = "\x1b[0m"
)

// Prefix starts every line aigate prints about events, so that they stand
// out in the output of the tool they are interleaved with.
const Prefix = "aigate: "

// Style says how Line renders an event.
type Style struct {
	Color bool
}

// ColorFor reports whether output to f should be coloured: f is a terminal,
// NO_COLOR (https://no-color.org) is unset and TERM is not "dumb".
func ColorFor(f *os.File) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// Format describes e in one line for humans, without prefix or colour:
//
//	blocked read /home/u/proj/.env (cat, pid 4242, rule .env)
//	would block connect 1.2.3.4:443 (example.com) (curl, pid 7, rule net: deny)
//
// Every string that came from the sandboxed process (path, comm, domain) is
// quoted when it holds control characters or invalid UTF-8, so that a hostile
// file name can neither forge a second line nor send escape sequences to the
// user's terminal.
func Format(e Event) string {
	return Style{}.Line(e)
}

// Line is Format with the style applied, without prefix or newline.
func (s Style) Line(e Event) string {
	var b strings.Builder
	verb, colour := "blocked", ansiRed
	switch {
	case e.Audit:
		verb, colour = "would block", ansiYellow
	case e.Op.AfterTheFact():
		verb = "detected" // after the fact: the rename or delete happened
	}
	if s.Color {
		b.WriteString(colour + verb + ansiReset)
	} else {
		b.WriteString(verb)
	}
	b.WriteByte(' ')
	b.WriteString(opName(e.Op))
	if t := target(e); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	if d := details(e); d != "" {
		b.WriteByte(' ')
		if s.Color {
			b.WriteString(ansiDim + d + ansiReset)
		} else {
			b.WriteString(d)
		}
	}
	switch {
	case e.Op == OpReceive && !e.Audit:
		b.WriteString(": the receiving process was killed")
	case !e.Op.AfterTheFact() || e.Audit:
	case e.Op == OpPlanted && e.MovedTo != "":
		b.WriteString(": moved aside to " + safe(e.MovedTo) + ", the sandbox was killed")
	case e.Op == OpPlanted:
		b.WriteString(": could not be moved aside (see the agent's log), the sandbox was killed")
	case e.Restored && e.Op == OpTruncate:
		b.WriteString(": undone, the file was restored and the sandbox killed")
	case e.Restored:
		b.WriteString(": undone, the file was restored")
	default:
		b.WriteString(": not undone, the sandbox was killed")
	}
	return b.String()
}

func opName(op Op) string {
	if op == "" {
		return "operation"
	}
	return safe(string(op))
}

// target is what the operation was aimed at: a path, an address (with the
// domain it was resolved from, when known) or a domain.
func target(e Event) string {
	switch {
	case e.Addr.IsValid():
		addr := e.Addr.String()
		if e.Domain != "" {
			return addr + " (" + safe(e.Domain) + ")"
		}
		return addr
	case e.Path != "":
		return safe(e.Path)
	case e.Domain != "":
		return safe(e.Domain)
	}
	return ""
}

// details is the parenthesised "who and why": process name, process id and
// the rule that matched.
func details(e Event) string {
	var parts []string
	if e.Comm != "" {
		parts = append(parts, safe(e.Comm))
	}
	// The process id is what users know from ps; the thread id is a
	// fallback for backends that cannot tell them apart.
	if pid := e.TGID; pid != 0 {
		parts = append(parts, "pid "+strconv.FormatUint(uint64(pid), 10))
	} else if e.PID != 0 {
		parts = append(parts, "pid "+strconv.FormatUint(uint64(e.PID), 10))
	}
	switch {
	case e.RuleText != "":
		parts = append(parts, "rule "+safe(e.RuleText))
	case e.Rule != 0:
		parts = append(parts, "rule #"+strconv.FormatUint(uint64(e.Rule), 10))
	}
	if e.Rescan {
		parts = append(parts, "found by a rescan after a watcher queue overflow, process unknown")
	}
	if len(parts) == 0 {
		return ""
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// safe returns s unchanged when it is printable UTF-8 without spaces at
// either end, and Go-quoted otherwise.
func safe(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	if strings.TrimSpace(s) != s {
		return strconv.Quote(s)
	}
	return s
}

// JSONWriter writes events as JSON lines, one object per event, in the
// schema documented in docs/events.md.
type JSONWriter struct {
	w io.Writer
}

// NewJSONWriter returns a writer to w. Each event is written with a single
// Write call, so that lines from concurrent writers appending to the same
// file (O_APPEND) never interleave.
func NewJSONWriter(w io.Writer) *JSONWriter {
	return &JSONWriter{w: w}
}

// Write encodes one event.
func (j *JSONWriter) Write(e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if _, err := j.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	return nil
}

// opOrder is the order in which a summary lists operations.
var opOrder = []Op{OpRead, OpOpen, OpWrite, OpRename, OpDelete, OpTruncate, OpChange, OpPlanted, OpExec, OpConnect, OpSend, OpDNS, OpUnix, OpPtrace, OpSignal, OpUserns, OpReceive}

// Summary counts denials per operation for the line printed at exit.
type Summary struct {
	blocked  map[Op]uint64
	audited  map[Op]uint64
	restored map[Op]uint64 // of blocked[op] seen after the fact, those undone (Event.Restored)
}

// Add counts the denials of one event (e.N()).
func (s *Summary) Add(e Event) {
	s.AddCount(e.Op, e.Audit, e.N())
	if e.Op.AfterTheFact() && e.Restored && !e.Audit {
		if s.restored == nil {
			s.restored = make(map[Op]uint64)
		}
		s.restored[e.Op] += e.N()
	}
}

// AddCount counts n denials of op, e.g. from a backend's exact counters.
func (s *Summary) AddCount(op Op, audit bool, n uint64) {
	if n == 0 {
		return
	}
	m := &s.blocked
	if audit {
		m = &s.audited
	}
	if *m == nil {
		*m = make(map[Op]uint64)
	}
	(*m)[op] += n
}

// Total is the number of denials counted, audited ones included.
func (s *Summary) Total() uint64 {
	var n uint64
	for _, v := range s.blocked {
		n += v
	}
	for _, v := range s.audited {
		n += v
	}
	return n
}

// String is the summary, one line per mode without prefix or newline, or ""
// when nothing was counted:
//
//	3 operations blocked (2 read, 1 exec)
func (s *Summary) String() string {
	var lines []string
	if l := summaryLine(s.blocked, s.restored, "blocked"); l != "" {
		lines = append(lines, l)
	}
	if l := summaryLine(s.audited, nil, "would have been blocked (audit mode)"); l != "" {
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

func summaryLine(m map[Op]uint64, restored map[Op]uint64, what string) string {
	var total uint64
	var parts []string
	seen := make(map[Op]bool)
	add := func(op Op, n uint64) {
		if n == 0 {
			return
		}
		total += n
		if op.AfterTheFact() && what == "blocked" {
			r := min(restored[op], n)
			if r > 0 {
				parts = append(parts, fmt.Sprintf("%d %s undone (file restored)", r, op))
			}
			if n > r {
				parts = append(parts, fmt.Sprintf("%d %s detected after the fact", n-r, op))
			}
		} else {
			parts = append(parts, fmt.Sprintf("%d %s", n, opName(op)))
		}
		seen[op] = true
	}
	for _, op := range opOrder {
		add(op, m[op])
	}
	// Operations added to the event type later still count.
	var rest []string
	for op := range m {
		if !seen[op] {
			rest = append(rest, string(op))
		}
	}
	slices.Sort(rest)
	for _, op := range rest {
		add(Op(op), m[Op(op)])
	}
	if total == 0 {
		return ""
	}
	noun := "operations"
	if total == 1 {
		noun = "operation"
	}
	return fmt.Sprintf("%d %s %s (%s)", total, noun, what, strings.Join(parts, ", "))
}
