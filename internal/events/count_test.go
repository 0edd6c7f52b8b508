package events

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// A folded event (Count > 1) counts as its denials everywhere a run
// reports them: the summary, and the printer's repeat and suppressed
// counts.
func TestFoldedEventCounts(t *testing.T) {
	var s Summary
	s.Add(Event{Op: OpConnect, Count: 500})
	s.Add(Event{Op: OpConnect}) // Count 0 is one denial
	s.Add(Event{Op: OpDelete, Restored: true, Count: 3})
	if got, want := s.String(), "504 operations blocked (3 delete undone (file restored), 501 connect)"; got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}

	p, out, clk := newTestPrinter(PrinterOptions{Burst: 1, Rate: 0.001})
	e := Event{Op: OpConnect, Addr: netip.MustParseAddrPort("10.9.9.9:9"), Comm: "flood", TGID: 7}
	folded := e
	folded.Count = 1000
	p.Print(folded) // printed: its 999 others are repeats
	p.Print(e)
	other := Event{Op: OpRead, Path: "/p/.env", Comm: "cat", TGID: 8, Count: 40}
	p.Print(other) // no token left: 40 suppressed
	clk.advance(3 * time.Second)
	p.Flush(true)
	want := []string{
		"aigate: blocked connect 10.9.9.9:9 (flood, pid 7)",
		"aigate: blocked connect 10.9.9.9:9 (flood, pid 7) (repeated 1000 more times)",
		"aigate: 40 more blocked operations not shown (too many to print; the summary counts them all, --events FILE records each)",
	}
	if got := lines(out.String()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("printer:\n%q\nwant\n%q", got, want)
	}
}

func TestSameDenial(t *testing.T) {
	e := Event{Time: time.Unix(1, 0), Op: OpConnect, Addr: netip.MustParseAddrPort("10.9.9.9:9"), Comm: "flood", PID: 7, TGID: 7}
	later := e
	later.Time, later.Count = time.Unix(2, 0), 4
	if !e.SameDenial(&later) {
		t.Fatal("same denial at another time with another count: not the same")
	}
	for name, change := range map[string]func(*Event){
		"thread":  func(o *Event) { o.PID = 8 },
		"address": func(o *Event) { o.Addr = netip.MustParseAddrPort("10.9.9.9:10") },
		"audit":   func(o *Event) { o.Audit = true },
		"rule":    func(o *Event) { o.RuleText = "net: deny" },
		"domain":  func(o *Event) { o.Domain = "example.com" },
	} {
		o := e
		change(&o)
		if e.SameDenial(&o) {
			t.Errorf("%s differs: still the same denial", name)
		}
	}
}

// TestSameDenialEveryField: SameDenial compares every field of Event but
// Time and Count, so a field added later cannot be folded away unseen.
func TestSameDenialEveryField(t *testing.T) {
	rt := reflect.TypeOf(Event{})
	for i := range rt.NumField() {
		f := rt.Field(i)
		var a, b Event
		v := reflect.ValueOf(&b).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Uint32, reflect.Uint64:
			v.SetUint(1)
		default:
			switch v.Interface().(type) {
			case time.Time:
				v.Set(reflect.ValueOf(time.Unix(1, 0)))
			case netip.AddrPort:
				v.Set(reflect.ValueOf(netip.MustParseAddrPort("10.0.0.1:1")))
			case *Refused:
				v.Set(reflect.ValueOf(&Refused{}))
			default:
				t.Fatalf("field %s of kind %s: teach this test to change it", f.Name, v.Kind())
			}
		}
		same := a.SameDenial(&b)
		if ignored := f.Name == "Time" || f.Name == "Count"; same != ignored {
			t.Errorf("field %s changed: SameDenial %v", f.Name, same)
		}
	}
}
