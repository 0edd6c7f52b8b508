package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// scrape fetches /metrics through the handler and parses it the way
// Prometheus does.
func scrape(t *testing.T, opts Options) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	srv := httptest.NewServer(Handler(New(opts), nil))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, body)
	}
	return fams, string(body)
}

// value returns the value of the series of fam with exactly these labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	var found []float64
	for _, m := range fam.GetMetric() {
		match := len(m.GetLabel()) == len(labels)
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			found = append(found, m.GetCounter().GetValue())
		case m.Gauge != nil:
			found = append(found, m.GetGauge().GetValue())
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, labels, len(found))
	}
	return found[0]
}

func TestViolationsEqualBackendCounters(t *testing.T) {
	stats := enforce.Stats{
		Violations: []enforce.Counter{
			{Kind: events.KindFile, Op: events.OpRead, Value: 7},
			{Kind: events.KindFile, Op: events.OpRead, Value: 5}, // a second object's counter
			{Kind: events.KindFile, Op: events.OpRead, Audit: true, Value: 3},
			{Kind: events.KindExec, Op: events.OpExec, Value: 1},
			{Kind: events.KindNet, Op: events.OpConnect, Value: 1 << 40},
			{Kind: "bogus", Op: "x", Value: 9}, // must not become a series
		},
		EventsDropped: 42,
	}
	fams, body := scrape(t, Options{
		Stats:     func() (enforce.Stats, error) { return stats, nil },
		Sandboxes: func() int { return 3 },
		Rules:     func() map[string]int { return map[string]int{"read": 10, "net": 2} },
		Version:   "v1.2.3",
		Backend:   "fanotify",
	})
	want := []struct {
		kind, op, mode string
		n              float64
	}{
		{"file", "read", "enforce", 12},
		{"file", "read", "audit", 3},
		{"exec", "exec", "enforce", 1},
		{"net", "connect", "enforce", 1 << 40},
		{"file", "write", "enforce", 0}, // present before the first denial
		{"net", "dns", "audit", 0},
	}
	for _, w := range want {
		got := value(t, fams, "aigate_violations_total", map[string]string{"kind": w.kind, "operation": w.op, "mode": w.mode})
		if got != w.n {
			t.Errorf("violations{%s,%s,%s} = %v, want %v", w.kind, w.op, w.mode, got, w.n)
		}
	}
	if n := len(fams["aigate_violations_total"].GetMetric()); n != 32 {
		t.Errorf("%d violation series, want 32 (16 operations x 2 modes)", n)
	}
	if strings.Contains(body, "bogus") {
		t.Errorf("an unknown kind became a label value:\n%s", body)
	}
	if got := value(t, fams, "aigate_events_dropped_total", nil); got != 42 {
		t.Errorf("dropped = %v, want 42", got)
	}
	if got := value(t, fams, "aigate_sandboxes_active", nil); got != 3 {
		t.Errorf("sandboxes = %v, want 3", got)
	}
	for k, n := range map[string]float64{"read": 10, "write": 0, "exec": 0, "net": 2} {
		if got := value(t, fams, "aigate_policy_rules", map[string]string{"kind": k}); got != n {
			t.Errorf("rules{%s} = %v, want %v", k, got, n)
		}
	}
	if fams["aigate_build_info"] == nil || fams["go_goroutines"] == nil || fams["process_start_time_seconds"] == nil {
		t.Errorf("build info, Go or process collector missing:\n%s", body)
	}
	if !strings.Contains(body, `version="v1.2.3"`) || !strings.Contains(body, `backend="fanotify"`) {
		t.Errorf("build info labels missing:\n%s", body)
	}
}

// A backend whose counters cannot be read must not take the other metrics
// down with it, and must not look like zero denials.
func TestStatsErrorIsReported(t *testing.T) {
	var logged logBuf
	srv := httptest.NewServer(Handler(New(Options{
		Stats:     func() (enforce.Stats, error) { return enforce.Stats{}, errors.New("map gone") },
		Sandboxes: func() int { return 1 },
		NoRuntime: true,
	}), &logged))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := string(body)
	if strings.Contains(s, "aigate_violations_total{") {
		t.Errorf("violations exported despite the error:\n%s", s)
	}
	if !strings.Contains(s, "aigate_sandboxes_active 1") {
		t.Errorf("other metrics missing:\n%s", s)
	}
	if !strings.Contains(logged.String(), "map gone") {
		t.Errorf("error not logged: %q", logged.String())
	}
}

func TestRuleCounts(t *testing.T) {
	c, err := policy.Compile(mustMerge(t), policy.Env{Home: "/home/u", ProjectRoot: "/home/u/p"})
	if err != nil {
		t.Fatal(err)
	}
	got := RuleCounts(c)
	total := 0
	for _, k := range RuleKinds {
		total += got[k]
	}
	if total != len(c.Rules) || got["read"] == 0 {
		t.Errorf("RuleCounts = %v for %d rules", got, len(c.Rules))
	}
}

func mustMerge(t *testing.T) *policy.Policy {
	t.Helper()
	p, _ := policy.Merge(policy.Defaults(), nil, false)
	return p
}

type logBuf struct{ strings.Builder }

func (l *logBuf) Println(v ...any) { fmt.Fprintln(&l.Builder, v...) }

// TestClaudeJSONUndone: the agent's count of ~/.claude.json files put
// back is a counter of its own.
func TestClaudeJSONUndone(t *testing.T) {
	fams, _ := scrape(t, Options{Undone: func() uint64 { return 3 }, NoRuntime: true})
	if v := value(t, fams, "aigate_claude_json_undone_total", nil); v != 3 {
		t.Errorf("aigate_claude_json_undone_total %v, want 3", v)
	}
}

// TestLandlockRefusals: Landlock's refusals, which no backend counter
// sees, are a counter of their own, every series present from the start.
func TestLandlockRefusals(t *testing.T) {
	fams, _ := scrape(t, Options{Landlock: func() map[events.Op]uint64 { return map[events.Op]uint64{events.OpWrite: 2} }, NoRuntime: true})
	if v := value(t, fams, "aigate_landlock_refusals_total", map[string]string{"kind": "file", "operation": "write"}); v != 2 {
		t.Errorf("write %v, want 2", v)
	}
	if v := value(t, fams, "aigate_landlock_refusals_total", map[string]string{"kind": "process", "operation": "ptrace"}); v != 0 {
		t.Errorf("ptrace %v, want 0", v)
	}
}
