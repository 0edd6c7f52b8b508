package bench

import (
	"errors"
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Summary
	}{
		{nil, Summary{}},
		{[]float64{3}, Summary{Median: 3, Q1: 3, Q3: 3, Min: 3, Max: 3, N: 1}},
		{[]float64{4, 1, 3, 2}, Summary{Median: 2.5, Q1: 1.75, Q3: 3.25, Min: 1, Max: 4, N: 4}},
		{[]float64{5, 1, 4, 2, 3}, Summary{Median: 3, Q1: 2, Q3: 4, Min: 1, Max: 5, N: 5}},
	} {
		if got := Summarize(tc.in); got != tc.want {
			t.Errorf("Summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestPairAlternates checks that the order flips every round and that each
// value lands on its own side whichever ran first.
func TestPairAlternates(t *testing.T) {
	var order []string
	n := 0.0
	base := func() (float64, error) { n++; order = append(order, "b"); return 100 + n, nil }
	cas := func() (float64, error) { n++; order = append(order, "c"); return 1000 + n, nil }
	r, err := Pair(3, base, cas)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(joined(order)), "bc"+"bc"+"cb"+"bc"; got != want {
		t.Errorf("order %s, want %s (warm-up, then alternating)", got, want)
	}
	// Warm-up took n=1,2; round 0: b=3 c=4; round 1: c=5 b=6; round 2: b=7 c=8.
	wantBase, wantCase := []float64{103, 106, 107}, []float64{1004, 1005, 1008}
	for i := range wantBase {
		if r.Base[i] != wantBase[i] || r.Case[i] != wantCase[i] {
			t.Fatalf("got base %v case %v, want %v %v", r.Base, r.Case, wantBase, wantCase)
		}
	}
	if x := r.Ratio(); x.N != 3 || math.Abs(x.Min-1008.0/107) > 1e-9 || math.Abs(x.Median-1005.0/106) > 1e-9 || math.Abs(x.Max-1004.0/103) > 1e-9 {
		t.Errorf("ratio summary %+v", x)
	}
}

func joined(s []string) []byte {
	var b []byte
	for _, x := range s {
		b = append(b, x...)
	}
	return b
}

func TestPairErrors(t *testing.T) {
	boom := errors.New("boom")
	ok := func() (float64, error) { return 1, nil }
	if _, err := Pair(2, ok, func() (float64, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Errorf("a failing measurement: got %v", err)
	}
	if _, err := Pair(2, ok, func() (float64, error) { return 0, nil }); err == nil {
		t.Error("a zero measurement was accepted")
	}
	if _, err := Pair(0, ok, ok); err == nil {
		t.Error("zero rounds were accepted")
	}
}

type metrics map[string]float64

func (m metrics) ReportMetric(n float64, unit string) { m[unit] = n }

func TestReport(t *testing.T) {
	r := Result{Base: []float64{10, 20, 10}, Case: []float64{12, 30, 11}}
	m := metrics{}
	r.Report(m)
	want := metrics{"ns/op": 12, "base-ns/op": 10, "x-vs-baseline": 1.2, "x-min": 1.1, "x-max": 1.5, "x-q1": 1.15, "x-q3": 1.35}
	for k, v := range want {
		if math.Abs(m[k]-v) > 1e-9 {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

func TestBatched(t *testing.T) {
	calls := 0
	op := func() error { calls++; return nil }
	if _, err := Batched(5001, op); err != nil {
		t.Fatal(err)
	}
	if calls != 5001 {
		t.Errorf("op ran %d times, want 5001", calls)
	}
	boom := errors.New("boom")
	if _, err := Batched(10, func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("a failing op: got %v", err)
	}
	if _, err := Batched(0, op); err == nil {
		t.Error("zero operations were accepted")
	}
}
