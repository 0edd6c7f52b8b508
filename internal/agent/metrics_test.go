//go:build linux

package agent

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/metrics"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestMetricsAfterOverflow: denials counted by the backend show up exactly
// in a scrape even when most of their events were lost, and the lost ones
// are counted as dropped.
func TestMetricsAfterOverflow(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	s, err := ta.client.CreateSandbox(context.Background(), createReq(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := launch.Start(s, exec.Command("sleep", "60")); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sb, _ := ta.be.sandbox(s.Sandbox.ID)
	const total, lost = 1000, 700
	for i := 0; i < total; i++ {
		e := events.Event{CgroupID: sb.CgroupID, Kind: events.KindExec, Op: events.OpExec, Path: "/usr/bin/ssh"}
		ta.be.deny(e, i >= total-lost) // the ring buffer fills up after 300
	}
	srv := httptest.NewServer(metrics.Handler(ta.Registry(), nil))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := func(name string, labels map[string]string) float64 {
		for _, m := range fams[name].GetMetric() {
			if matches(m, labels) {
				if m.Counter != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	if v := got("aigate_violations_total", map[string]string{"kind": "exec", "operation": "exec", "mode": "enforce"}); v != total {
		t.Errorf("violations = %v, want %d", v, total)
	}
	if v := got("aigate_events_dropped_total", nil); v != lost {
		t.Errorf("dropped = %v, want %d", v, lost)
	}
	if v := got("aigate_sandboxes_active", nil); v != 1 {
		t.Errorf("sandboxes = %v, want 1", v)
	}
	if v := got("aigate_policy_rules", map[string]string{"kind": "read"}); v == 0 {
		t.Error("no read rules counted for the default policy")
	}
}

func matches(m *dto.Metric, labels map[string]string) bool {
	if len(m.GetLabel()) != len(labels) {
		return false
	}
	for _, l := range m.GetLabel() {
		if labels[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}
