package llaudit

import (
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
)

var testT0 = time.Unix(1796577640, 0)

func mustParse(t *testing.T, typ uint16, s string) Record {
	t.Helper()
	r, err := Parse(typ, []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// inSandbox resolves pid 20427 of uid 65534 to sandbox s1, as the agent
// does from /proc/PID/cgroup.
func inSandbox(pid int, uid uint32) (Owner, bool) {
	if pid == 20427 && uid == 65534 {
		return Owner{Sandbox: "s1", CgroupID: 77}, true
	}
	return Owner{}, false
}

func feed(c *Collector, recs []Record, now time.Time) []events.Event {
	var out []events.Event
	for _, r := range recs {
		out = append(out, c.Add(r, now)...)
	}
	return out
}

func TestCollectorAttributes(t *testing.T) {
	c := NewCollector(inSandbox)
	first := []Record{
		mustParse(t, TypeLandlockAccess, recAccessFile),
		mustParse(t, TypeLandlockDomain, recDomain),
		mustParse(t, TypeSyscall, recSyscall),
		mustParse(t, TypeEOE, recEOE),
	}
	got := feed(c, first, testT0)
	if len(got) != 1 {
		t.Fatalf("events %+v, want one", got)
	}
	e := got[0]
	if e.Sandbox != "s1" || e.CgroupID != 77 || e.Kind != events.KindFile || e.Op != events.OpWrite ||
		e.Path != "/home/u/.bashrc" || e.TGID != 20427 || e.Comm != "sh" || e.Backend != Backend {
		t.Errorf("event %+v", e)
	}
	// Later refusals of the same domain carry no DOMAIN record; a task
	// without audit context has no SYSCALL or EOE either: handed on after
	// hold.
	got = feed(c, []Record{mustParse(t, TypeLandlockAccess, recAccessPtr)}, testT0)
	if len(got) != 0 {
		t.Fatalf("handed on before its end or hold: %+v", got)
	}
	got = c.Expire(testT0.Add(hold))
	if len(got) != 1 || got[0].Kind != events.KindProc || got[0].Op != events.OpPtrace || got[0].Path != "pid 20426 (sleep)" || got[0].TGID != 0 {
		t.Fatalf("ptrace events %+v", got)
	}
	got = feed(c, []Record{mustParse(t, TypeLandlockAccess, recAccessSig), mustParse(t, TypeEOE, `audit(1796577640.044:13): `)}, testT0)
	if len(got) != 1 || got[0].Op != events.OpSignal {
		t.Fatalf("signal events %+v", got)
	}
	// Deallocated: the id is forgotten, a later record with it ignored.
	feed(c, []Record{mustParse(t, TypeLandlockDomain, recDeallocated)}, testT0)
	if got := feed(c, []Record{mustParse(t, TypeLandlockAccess, recAccessPtr), mustParse(t, TypeEOE, `audit(1796577640.044:12): `)}, testT0); len(got) != 0 {
		t.Errorf("a deallocated domain's refusal was reported: %+v", got)
	}
}

// A domain made by a process outside every sandbox (or by one of another
// user) is never attributed, whatever its records say.
func TestCollectorIgnoresOutside(t *testing.T) {
	for name, domain := range map[string]string{
		"outside pid": `audit(1796577640.044:11): domain=14bad2fc1 status=allocated mode=enforcing pid=999 uid=65534 exe="/usr/bin/aigate" comm="aigate"`,
		"other uid":   `audit(1796577640.044:11): domain=14bad2fc1 status=allocated mode=enforcing pid=20427 uid=0 exe="/usr/bin/aigate" comm="aigate"`,
		"no creator":  ``,
	} {
		t.Run(name, func(t *testing.T) {
			c := NewCollector(inSandbox)
			recs := []Record{mustParse(t, TypeLandlockAccess, recAccessFile)}
			if domain != "" {
				recs = append(recs, mustParse(t, TypeLandlockDomain, domain))
			}
			// The refused task is the sandbox's creator pid: that must not
			// be enough, only the domain's creator counts.
			recs = append(recs, mustParse(t, TypeSyscall, recSyscall), mustParse(t, TypeEOE, recEOE))
			if got := feed(c, recs, testT0); len(got) != 0 {
				t.Errorf("attributed: %+v", got)
			}
			if got := c.Expire(testT0.Add(time.Hour)); len(got) != 0 {
				t.Errorf("attributed after expiry: %+v", got)
			}
			if c.Ignored != 1 {
				t.Errorf("ignored %d, want 1", c.Ignored)
			}
		})
	}
}

// A flood of events that never end is bounded.
func TestCollectorBounded(t *testing.T) {
	c := NewCollector(inSandbox)
	for i := 0; i < 3*maxPending; i++ {
		c.Add(Record{Type: TypeLandlockAccess, Serial: uint64(i), Domain: 1}, testT0)
	}
	if len(c.pending) > maxPending || len(c.order) > maxPending {
		t.Errorf("pending %d, order %d", len(c.pending), len(c.order))
	}
}
