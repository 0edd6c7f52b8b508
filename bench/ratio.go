package bench

import (
	"fmt"
	"os"
	"slices"
	"strconv"
)

// DefaultRounds is how many baseline/case pairs Pair measures unless
// AIGATE_BENCH_ROUNDS says otherwise: enough for a median and a spread that
// one preempted measurement cannot move, few enough to stay within seconds.
const DefaultRounds = 10

// Rounds returns AIGATE_BENCH_ROUNDS if it holds a positive number, else
// DefaultRounds.
func Rounds() int {
	if n, err := strconv.Atoi(os.Getenv("AIGATE_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return DefaultRounds
}

// Measure performs a fixed amount of work once and returns its cost in
// nanoseconds per operation.
type Measure func() (float64, error)

// Result holds the per-round costs of a baseline and a case, in ns per
// operation; Base[i] and Case[i] were measured next to each other.
type Result struct {
	Base, Case []float64
}

// Pair measures base and cas in turn for rounds rounds, after one discarded
// warm-up pair. The order alternates (base first in even rounds, the case
// first in odd ones), so that a load that rises or falls steadily during a
// round favours neither side.
func Pair(rounds int, base, cas Measure) (Result, error) {
	if rounds < 1 {
		return Result{}, fmt.Errorf("pair: %d rounds, need at least 1", rounds)
	}
	var r Result
	for i := -1; i < rounds; i++ {
		caseFirst := i >= 0 && i%2 == 1
		first, second := base, cas
		if caseFirst {
			first, second = cas, base
		}
		x, err := first()
		if err != nil {
			return Result{}, err
		}
		y, err := second()
		if err != nil {
			return Result{}, err
		}
		if i < 0 {
			continue // warm-up: caches, page faults, the helper binary
		}
		b, c := x, y
		if caseFirst {
			b, c = y, x
		}
		if b <= 0 || c <= 0 {
			return Result{}, fmt.Errorf("pair: round %d measured %v ns/op for the baseline and %v for the case: too little work per measurement for the clock", i, b, c)
		}
		r.Base = append(r.Base, b)
		r.Case = append(r.Case, c)
	}
	return r, nil
}

// Ratios returns Case[i]/Base[i] for every round.
func (r Result) Ratios() []float64 {
	out := make([]float64, len(r.Base))
	for i := range r.Base {
		out[i] = r.Case[i] / r.Base[i]
	}
	return out
}

// Summary describes a sample: its median, quartiles and extremes.
type Summary struct {
	Median, Q1, Q3, Min, Max float64
	N                        int
}

// Summarize computes the summary of xs (quartiles by linear interpolation
// between closest ranks). It returns the zero Summary for an empty sample.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Summary{
		Median: quantile(s, 0.5),
		Q1:     quantile(s, 0.25),
		Q3:     quantile(s, 0.75),
		Min:    s[0],
		Max:    s[len(s)-1],
		N:      len(s),
	}
}

// quantile of a sorted sample.
func quantile(s []float64, q float64) float64 {
	pos := q * float64(len(s)-1)
	lo := int(pos)
	if lo+1 >= len(s) {
		return s[len(s)-1]
	}
	frac := pos - float64(lo)
	return s[lo] + frac*(s[lo+1]-s[lo])
}

// Ratio summarizes the per-round ratios.
func (r Result) Ratio() Summary { return Summarize(r.Ratios()) }

// Reporter is the part of testing.B that Report uses.
type Reporter interface {
	ReportMetric(n float64, unit string)
}

// Report puts the result on the benchmark's output line: ns/op becomes the
// case's median cost (replacing the framework's own, which would include
// the baseline and any setup), base-ns/op the baseline's median, and
// x-vs-baseline the median ratio with x-min, x-q1, x-q3 and x-max as its
// spread.
func (r Result) Report(b Reporter) {
	x := r.Ratio()
	b.ReportMetric(Summarize(r.Case).Median, "ns/op")
	b.ReportMetric(Summarize(r.Base).Median, "base-ns/op")
	b.ReportMetric(x.Median, "x-vs-baseline")
	b.ReportMetric(x.Min, "x-min")
	b.ReportMetric(x.Q1, "x-q1")
	b.ReportMetric(x.Q3, "x-q3")
	b.ReportMetric(x.Max, "x-max")
}
