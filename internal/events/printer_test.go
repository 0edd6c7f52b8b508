package events

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestPrinter(opts PrinterOptions) (*Printer, *strings.Builder, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	opts.Now = clk.now
	var out strings.Builder
	return NewPrinter(&out, opts), &out, clk
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func TestPrinterDedup(t *testing.T) {
	p, out, clk := newTestPrinter(PrinterOptions{Window: 2 * time.Second})
	env := Event{Op: OpRead, Path: "/p/.env", Comm: "cat", TGID: 1, RuleText: ".env"}
	p.Print(env)
	for i := 0; i < 5; i++ {
		clk.advance(100 * time.Millisecond)
		e := env
		e.TGID = uint32(2 + i) // another process with the same name: still a repeat
		p.Print(e)
	}
	other := Event{Op: OpRead, Path: "/p/.env", Comm: "less", TGID: 9}
	p.Print(other)
	p.Flush(false) // window not over yet: nothing more
	want := []string{
		"aigate: blocked read /p/.env (cat, pid 1, rule .env)",
		"aigate: blocked read /p/.env (less, pid 9)",
	}
	if got := lines(out.String()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("before window end:\n%q\nwant\n%q", got, want)
	}
	clk.advance(2 * time.Second)
	p.Flush(false)
	// The repeats came from five other processes: the line names none.
	want = append(want, "aigate: blocked read /p/.env (cat, rule .env) (repeated 5 more times by 5 processes)")
	if got := lines(out.String()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after window end:\n%q\nwant\n%q", got, want)
	}
	// After the window a new series starts with a full line.
	p.Print(env)
	p.Print(env)
	p.Flush(true)
	want = append(want,
		"aigate: blocked read /p/.env (cat, pid 1, rule .env)",
		"aigate: blocked read /p/.env (cat, pid 1, rule .env) (repeated 1 more time)")
	if got := lines(out.String()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after final flush:\n%q\nwant\n%q", got, want)
	}
}

// A repeat line names the first process only when the repeats were its
// own; one other process is named, many are counted up to maxPids.
func TestPrinterRepeatsNameTheirProcesses(t *testing.T) {
	env := Event{Op: OpRead, Path: "/p/.env", Comm: "cat", TGID: 1, RuleText: ".env"}
	for _, tc := range []struct {
		name string
		pids []uint32 // of the repeats
		want string
	}{
		{"same process", []uint32{1, 1, 1}, "(cat, pid 1, rule .env) (repeated 3 more times)"},
		{"one other", []uint32{7, 7}, "(cat, rule .env) (repeated 2 more times by pid 7)"},
		{"first among others", []uint32{1, 2, 1, 3}, "(cat, rule .env) (repeated 4 more times by 3 processes)"},
		{"each new", seq(2, 3001), fmt.Sprintf("(cat, rule .env) (repeated 2999 more times by more than %d processes)", maxPids)},
		{"exactly the bound", seq(2, 2+maxPids), fmt.Sprintf("(cat, rule .env) (repeated %d more times by %d processes)", maxPids, maxPids)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, out, _ := newTestPrinter(PrinterOptions{})
			p.Print(env)
			for _, pid := range tc.pids {
				e := env
				e.TGID = pid
				p.Print(e)
			}
			p.Flush(true)
			got := lines(out.String())
			want := "aigate: blocked read /p/.env " + tc.want
			if len(got) != 2 || got[1] != want {
				t.Fatalf("got\n%q\nwant second line\n%q", got, want)
			}
		})
	}
}

// seq returns the pids from up to end, end excluded.
func seq(from, end uint32) []uint32 {
	var s []uint32
	for pid := from; pid < end; pid++ {
		s = append(s, pid)
	}
	return s
}

func TestPrinterDedupKeyedOnAuditAndOp(t *testing.T) {
	p, out, _ := newTestPrinter(PrinterOptions{})
	e := Event{Op: OpRead, Path: "/p/x", Comm: "cat"}
	p.Print(e)
	w := e
	w.Op = OpWrite
	p.Print(w)
	a := e
	a.Audit = true
	p.Print(a)
	if n := len(lines(out.String())); n != 3 {
		t.Fatalf("want 3 distinct lines, got %q", out.String())
	}
}

func TestPrinterRateLimit(t *testing.T) {
	p, out, clk := newTestPrinter(PrinterOptions{Burst: 3, Rate: 1, Window: time.Second})
	for i := 0; i < 10; i++ {
		p.Print(Event{Op: OpRead, Path: fmt.Sprintf("/p/%d", i), Comm: "find"})
	}
	got := lines(out.String())
	if len(got) != 3 || got[2] != "aigate: blocked read /p/2 (find)" {
		t.Fatalf("burst: %q", got)
	}
	// No token yet: the suppressed count waits.
	clk.advance(100 * time.Millisecond)
	p.Flush(false)
	if len(lines(out.String())) != 3 {
		t.Fatalf("printed without a token: %q", out.String())
	}
	// A repeat of a suppressed event counts as suppressed, not as a repeat.
	p.Print(Event{Op: OpRead, Path: "/p/9", Comm: "find"})
	clk.advance(time.Second)
	p.Flush(false)
	got = lines(out.String())
	if len(got) != 4 || !strings.HasPrefix(got[3], "aigate: 8 more blocked operations not shown") {
		t.Fatalf("after refill: %q", got)
	}
	// The token was spent on the notice, and it is not repeated.
	p.Flush(true)
	if len(lines(out.String())) != 4 {
		t.Fatalf("notice repeated: %q", out.String())
	}
}

func TestPrinterBoundedTable(t *testing.T) {
	p, _, _ := newTestPrinter(PrinterOptions{Burst: 1, Rate: 1})
	for i := 0; i < 3*maxTracked; i++ {
		p.Print(Event{Op: OpRead, Path: fmt.Sprintf("/p/%d", i)})
	}
	if n := len(p.seen); n > maxTracked {
		t.Fatalf("table grew to %d entries", n)
	}
	if p.suppressed != 3*maxTracked-1 {
		t.Fatalf("suppressed = %d, want %d", p.suppressed, 3*maxTracked-1)
	}
}

// TestPrinterLandlockBudget: Landlock's refusals (a tool failing again and
// again on its own files in the read-only home) spend a budget of their
// own, so that a flood of them never hides the backend's denials.
func TestPrinterLandlockBudget(t *testing.T) {
	p, out, _ := newTestPrinter(PrinterOptions{Burst: 3, Rate: 0.001})
	for i := range 10 {
		p.Print(Event{Op: OpWrite, Path: fmt.Sprintf("/home/u/.claude.json.tmp.%d", i), Comm: "claude", TGID: 7, Backend: BackendLandlock})
	}
	p.Print(Event{Op: OpRead, Path: "/p/.env", Comm: "cat", TGID: 8})
	if got := out.String(); !strings.Contains(got, "blocked read /p/.env") {
		t.Fatalf("the backend's denial was not printed after a flood of Landlock's:\n%s", got)
	}
	if n := strings.Count(out.String(), ".claude.json.tmp."); n != 3 {
		t.Fatalf("%d Landlock lines, want the burst of 3:\n%s", n, out.String())
	}
}
