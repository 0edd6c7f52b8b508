package policy

import (
	"fmt"
	"strings"
)

// Error is a problem in a configuration file or in one value (a pattern, an
// endpoint, a size). It prints as
//
//	~/.aigate/config.yaml:12: unknown key "deny_reed" (did you mean "deny_read"?)
//
// File and Line are empty for values checked on their own (CheckPattern,
// ParseEndpoint, ParseSize); Parse fills them in.
type Error struct {
	File   string
	Line   int
	Column int // 1-based; 0 when unknown. Not printed: editors jump to the line.
	Msg    string
	Hint   string // what to do instead; may be empty
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

// Errors is every problem found in one file, in file order. Parse returns it
// when there is more than one, so that the user can fix them all at once;
// errors.As(err, &*Error) finds the first.
type Errors []*Error

// maxErrors bounds how many problems Parse reports for one file.
const maxErrors = 10

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As and errors.Is see each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// valueError is the error for a single value, before Parse knows its place.
func valueError(hint, format string, args ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// suggest returns the candidate closest to s, or "" when none is close
// enough to be what the user meant.
func suggest(s string, candidates []string) string {
	norm := func(x string) string {
		x = strings.ToLower(x)
		return strings.NewReplacer("-", "", "_", "", " ", "").Replace(x)
	}
	best, bestDist := "", -1
	for _, c := range candidates {
		if norm(c) == norm(s) {
			return c
		}
		d := editDistance(s, c)
		if n := commonPrefix(s, c); n >= 3 && n >= min(len(s), len(c))-1 {
			d = min(d, 1) // "max_mem" for "max_memory", "denied" for "deny"
		}
		limit := max(2, len(c)/4)
		if d <= limit && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// didYouMean formats the hint for an unknown word, listing the valid ones
// when none is close.
func didYouMean(s string, candidates []string) string {
	if c := suggest(s, candidates); c != "" {
		return fmt.Sprintf("did you mean %q?", c)
	}
	return "valid: " + strings.Join(candidates, ", ")
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
