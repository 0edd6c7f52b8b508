package darwin

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

func TestRefresh(t *testing.T) {
	c := testPolicy()
	res := fakeResolver{"api.anthropic.com": {netip.MustParseAddr("160.79.104.10")}}
	r := &fakeRunner{}
	f := newRefresher(r, res, c.Net)
	// github.com does not resolve: a warning, and its table is untouched.
	n, err := f.Refresh(context.Background())
	if n != 1 || err == nil || !strings.Contains(err.Error(), "github.com") {
		t.Fatalf("first refresh: n=%d err=%v", n, err)
	}
	if got := string(r.calls[0].Stdin); got != "10.1.0.0/16\n160.79.104.10\n" {
		t.Errorf("table contents %q: static entries must stay in the replaced table", got)
	}
	// Same answers: nothing to replace.
	r.calls = nil
	res["github.com"] = []netip.Addr{netip.MustParseAddr("140.82.121.4")}
	if n, err := f.Refresh(context.Background()); n != 1 || err != nil {
		t.Fatalf("second refresh: n=%d err=%v", n, err)
	}
	if l := r.lines(); len(l) != 1 || !strings.Contains(l[0], "-t aigate_allow_p443 -T replace") {
		t.Errorf("second refresh ran %q, want only the 443 table", l)
	}
	// A rotated address is added; the old one stays (connections in use).
	r.calls = nil
	res["github.com"] = []netip.Addr{netip.MustParseAddr("140.82.121.3")}
	f.Refresh(context.Background())
	if got := string(r.calls[0].Stdin); got != "140.82.121.3\n140.82.121.4\n" {
		t.Errorf("after rotation %q", got)
	}
	r.calls = nil
	if n, _ := f.Refresh(context.Background()); n != 0 || len(r.calls) != 0 {
		t.Errorf("unchanged answers replaced %d tables", n)
	}
}

func TestRefreshRunStops(t *testing.T) {
	f := newRefresher(&fakeRunner{}, fakeResolver{}, testPolicy().Net)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	reports := make(chan error, 10)
	go func() { f.Run(ctx, time.Millisecond, func(err error) { reports <- err }); close(done) }()
	<-reports // at least one tick ran
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
}

func TestDoctorChecks(t *testing.T) {
	on := CheckPFEnabled("No ALTQ support in kernel\nStatus: Enabled for 0 days 01:02:03           Debug: Urgent\n\nState Table    Total  Rate\n")
	off := CheckPFEnabled("Status: Disabled for 0 days 00:00:00           Debug: Urgent\n")
	none := CheckPFEnabled("pfctl: /dev/pf: Permission denied\n")
	if !on.OK || off.OK || off.Fix == "" || !strings.Contains(off.Fix, "pfctl -e") || none.OK || !strings.Contains(none.Fix, "sudo") {
		t.Errorf("pf checks: %+v %+v %+v", on, off, none)
	}
	if c := CheckAnchorReferenced("  com.apple\n  com.aigate\n"); !c.OK {
		t.Errorf("anchor present: %+v", c)
	}
	if c := CheckAnchorReferenced("  com.apple\n  com.aigate.old\n"); c.OK || !strings.Contains(c.Fix, "aigate setup") {
		t.Errorf("anchor absent: %+v", c)
	}
	conf, _, _ := InstallAnchorLine(appleConf)
	if c := CheckPFConf(conf); !c.OK {
		t.Errorf("pf.conf with line: %+v", c)
	}
	if c := CheckPFConf(appleConf); c.OK || c.Fix != "sudo aigate setup" {
		t.Errorf("pf.conf without line: %+v", c)
	}
	out := "NFSHomeDirectory: /var/db/aigate/home\nPrimaryGroupID: 499\nUniqueID: 499\n"
	if c := CheckSandboxUser(out, nil, testUser); !c.OK {
		t.Errorf("user ok: %+v", c)
	}
	other := testUser
	other.UID = 450
	if c := CheckSandboxUser(out, nil, other); c.OK || !strings.Contains(c.Detail, "499:499") {
		t.Errorf("id mismatch: %+v", c)
	}
	missing := "<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)\n"
	if c := CheckSandboxUser(missing, errors.New("exit status 56"), testUser); c.OK || c.Fix != "sudo aigate setup" {
		t.Errorf("user missing: %+v", c)
	}
}

// Lines as tcpdump -n -e -tttt -i pflog0 prints them (the first two in
// the format of print-pflog.c for an anchored rule), plus noise.
const pflogSample = `2025-03-01 10:15:42.123456 rule 0.com.aigate.5/0(match): block out on en0: 192.168.1.23.50432 > 93.184.216.34.443: Flags [S], seq 2826547911, win 65535, options [mss 1460,nop,wscale 6,nop,nop,TS val 1 ecr 0,sackOK,eol], length 0
2025-03-01 10:15:43.000001 rule 0.com.aigate.0/0(match): block out on en0: 192.168.1.23.61000 > 169.254.169.254.80: Flags [S], seq 1, win 65535, length 0
2025-03-01 10:15:44.500000 rule 0.com.aigate.5/0(match): block out on en0: IP6 2001:db8::5.53000 > 2606:4700::6810:84e5.443: UDP, length 1200
2025-03-01 10:15:45.000000 rule 0.com.aigate.5/0(match): pass out on en0: 192.168.1.23.50999 > 1.1.1.1.53: 4242+ A? example.com. (29)
2025-03-01 10:15:46.000000 rule 3.com.apple.2/0(match): block in on en0: 10.0.0.9.5353 > 224.0.0.251.5353: UDP, length 40
tcpdump: verbose output suppressed, use -v[v]... for full protocol decode
listening on pflog0, link-type PFLOG (OpenBSD pflog file), snapshot length 262144 bytes
`

func TestReadPFLog(t *testing.T) {
	c := testPolicy()
	out := make(chan events.Event, 10)
	if err := ReadPFLog(context.Background(), strings.NewReader(pflogSample), c, testUser, out); err != nil {
		t.Fatal(err)
	}
	close(out)
	var got []events.Event
	for e := range out {
		got = append(got, e)
	}
	if len(got) != 4 {
		t.Fatalf("%d events, want 4 (com.apple lines and noise skipped): %+v", len(got), got)
	}
	want := []struct {
		op    events.Op
		addr  string
		rule  string
		audit bool
	}{
		{events.OpConnect, "93.184.216.34:443", "net: deny", false},
		{events.OpConnect, "169.254.169.254:80", "metadata", false},
		{events.OpSend, "[2606:4700::6810:84e5]:443", "net: deny", false},
		{events.OpSend, "1.1.1.1:53", "net: deny", true},
	}
	for i, w := range want {
		e := got[i]
		// Raw, as every backend reports it: the rule by its id, named
		// by agent.Name (run's, on macOS).
		r, _ := c.Rule(policy.RuleID(e.Rule))
		if e.Op != w.op || e.Addr.String() != w.addr || r.Pattern != w.rule || e.RuleText != "" || e.Sandbox != "" ||
			e.Audit != w.audit || e.Kind != events.KindNet || e.UID != 499 || e.Backend != "pf" {
			t.Errorf("event %d = %+v, want %+v", i, e, w)
		}
	}
	if tm := got[0].Time; tm.Year() != 2025 || tm.Second() != 42 || tm.Nanosecond() != 123456000 {
		t.Errorf("time %v", tm)
	}
	// -ttt style (no absolute time) falls back to the read time.
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	e, ok := ParsePFLogLine(" 00:00:01.000000 rule 0.com.aigate.5/0(match): block out on en0: 10.0.0.2.1000 > 10.0.0.3.22: Flags [S], length 0", now)
	if !ok || !e.Time.Equal(now) || e.Ruleset != "com.aigate" {
		t.Errorf("-ttt line: %+v %v", e, ok)
	}
	for _, bad := range []string{"", "rule", "rule 0/0(match): block out on en0: garbage", "rule 0.com.aigate.1/0(match): block out on en0: 1.2.3.4 > 5.6.7.8.x: UDP"} {
		if _, ok := ParsePFLogLine(bad, now); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestCommandString(t *testing.T) {
	c := Command{Name: "chmod", Args: []string{"+a", "user:x deny read", "/it's here", ""}}
	if got, want := c.String(), `chmod +a 'user:x deny read' '/it'\''s here' ''`; got != want {
		t.Errorf("got %s want %s", got, want)
	}
}
