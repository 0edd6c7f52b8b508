//go:build linux

package agent

import (
	"context"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// namingFake is the fake backend with the egress part's DomainOf: the one
// address it learned for one cgroup.
type namingFake struct {
	*fakeBackend
	cgroupID uint64
}

func (n *namingFake) DomainOf(cgroupID uint64, addr netip.Addr) string {
	if cgroupID == n.cgroupID && addr == netip.MustParseAddr("192.0.2.9") {
		return "api.example"
	}
	return ""
}

// TestPumpNamesEvents: backends emit events as the kernel reported them
// (a cgroup and a rule id); the agent is the one place that names them:
// the sandbox, the rule as written, and a connection's domain, asked of
// the backend.
func TestPumpNamesEvents(t *testing.T) {
	testutil.HostOnly(t)
	nf := &namingFake{}
	ta := startAgentWith(t, "", "", func(c *Config) {
		nf.fakeBackend = c.Backend.(*fakeBackend)
		c.Backend = nf
	})
	ctx := context.Background()
	s, err := ta.client.CreateSandbox(ctx, createReq(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := launch.Start(s, exec.Command("sleep", "60")); err != nil {
		t.Fatal(err)
	}
	sb, ok := ta.be.sandbox(s.Sandbox.ID)
	if !ok {
		t.Fatalf("backend does not know sandbox %s", s.Sandbox.Name)
	}
	nf.cgroupID = sb.CgroupID
	rule, ok := sb.Policy.Rule(policy.RuleID(1))
	if !ok {
		t.Fatal("the default policy has no rule 1")
	}
	ta.be.deny(events.Event{CgroupID: sb.CgroupID, Kind: events.KindFile, Op: events.OpRead, Path: "/x/.env", Rule: 1}, false)
	ta.be.deny(events.Event{CgroupID: sb.CgroupID, Kind: events.KindNet, Op: events.OpConnect,
		Addr: netip.MustParseAddrPort("192.0.2.9:443"), Rule: 1}, false)
	ta.be.deny(events.Event{CgroupID: sb.CgroupID, Kind: events.KindNet, Op: events.OpConnect,
		Addr: netip.MustParseAddrPort("192.0.2.10:443"), Rule: 1}, false)
	var got []events.Event
	for len(got) < 3 {
		select {
		case e := <-s.Events():
			got = append(got, e)
		case <-time.After(5 * time.Second):
			t.Fatalf("%d events, want 3", len(got))
		}
	}
	for i, e := range got {
		if e.Sandbox != s.Sandbox.Name || e.RuleText != rule.Pattern || e.Backend != "fake" {
			t.Errorf("event %d not named: %+v, want sandbox %s rule %q", i, e, s.Sandbox.Name, rule.Pattern)
		}
	}
	if got[0].Domain != "" || got[1].Domain != "api.example" || got[2].Domain != "" {
		t.Errorf("domains %q %q %q, want \"\" api.example \"\"", got[0].Domain, got[1].Domain, got[2].Domain)
	}
}
