package metrics

import (
	"fmt"
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Options say where the values come from. Each function is called at scrape
// time; a nil function leaves its metrics out.
type Options struct {
	// Stats reads the backend's exact counters.
	Stats func() (enforce.Stats, error)
	// Sandboxes is the number of live sandboxes.
	Sandboxes func() int
	// Rules is the number of rules per kind (see RuleKinds) summed over the
	// live sandboxes' policies.
	Rules func() map[string]int
	// WatchDropped counts events the agent could not hand to a slow watcher.
	WatchDropped func() uint64
	// Undone counts the ~/.claude.json files put back after a sandbox.
	Undone func() uint64
	// Landlock counts the refusals of the sandboxes' Landlock domains
	// that the kernel reported to audit (package llaudit), by operation;
	// nil when the agent does not read them.
	Landlock func() map[events.Op]uint64
	// Backend is the name of the enforcement backend, for build info.
	Backend string
	// Version and Commit identify the build.
	Version, Commit string
	// NoRuntime leaves out the Go and process collectors (tests).
	NoRuntime bool
}

// RuleKinds are the values of the kind label of aigate_policy_rules.
var RuleKinds = []string{"read", "write", "exec", "net"}

// The operations each kind can report, so that every series exists from the
// first scrape (rate() of a series that appears late misses its first
// increase).
var knownOps = []struct {
	kind events.Kind
	op   events.Op
}{
	{events.KindFile, events.OpRead},
	{events.KindFile, events.OpWrite},
	{events.KindFile, events.OpRename},
	{events.KindFile, events.OpDelete},
	{events.KindFile, events.OpTruncate},
	{events.KindFile, events.OpPlanted},
	{events.KindFile, events.OpOpen},
	{events.KindExec, events.OpExec},
	{events.KindNet, events.OpConnect},
	{events.KindNet, events.OpSend},
	{events.KindNet, events.OpDNS},
	{events.KindNet, events.OpUnix},
	{events.KindProc, events.OpPtrace},
	{events.KindProc, events.OpSignal},
	{events.KindProc, events.OpUserns},
	{events.KindNet, events.OpReceive},
}

var (
	violationsDesc = prometheus.NewDesc("aigate_violations_total",
		"Operations denied (mode=enforce) or that would have been denied (mode=audit), from the backend's exact counters.",
		[]string{"kind", "operation", "mode"}, nil)
	droppedDesc = prometheus.NewDesc("aigate_events_dropped_total",
		"Denial events lost because the ring buffer or event queue was full; the violation counters still count them.",
		nil, nil)
	sandboxesDesc = prometheus.NewDesc("aigate_sandboxes_active",
		"Sandboxes currently enforced.", nil, nil)
	rulesDesc = prometheus.NewDesc("aigate_policy_rules",
		"Rules of the live sandboxes' policies, by kind.", []string{"kind"}, nil)
	watchDroppedDesc = prometheus.NewDesc("aigate_watch_events_dropped_total",
		"Events not delivered to a watcher that did not keep up.", nil, nil)
	undoneDesc = prometheus.NewDesc("aigate_claude_json_undone_total",
		"Claude Code ~/.claude.json files whose MCP servers, approvals or allowed tools a sandbox changed and aigate put back once it ended (each also an event, op change).",
		nil, nil)
	landlockDesc = prometheus.NewDesc("aigate_landlock_refusals_total",
		"Refusals by the sandboxes' Landlock domains (writes to the read-only home, ptrace and signals outside), from the system calls they made fail or, while audit is enabled, the kernel's audit records (aigate doctor).",
		[]string{"kind", "operation"}, nil)
	buildDesc = prometheus.NewDesc("aigate_build_info",
		"Always 1; the labels identify the build and the enforcement backend.",
		[]string{"version", "commit", "goversion", "backend"}, nil)
)

// New returns a registry holding aigate's metrics and, unless
// opts.NoRuntime, the standard Go and process collectors.
func New(opts Options) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{opts: opts})
	if !opts.NoRuntime {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return reg
}

// Handler serves the registry in the Prometheus exposition format. A
// source that fails is left out of the response and reported to errLog
// (may be nil); the other metrics are still served, so that one unreadable
// map does not blind the whole dashboard.
func Handler(reg *prometheus.Registry, errLog promhttp.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, ErrorLog: errLog})
}

// RuleCounts counts c's rules by kind, the label values of
// aigate_policy_rules.
func RuleCounts(c *policy.Compiled) map[string]int {
	out := make(map[string]int, len(RuleKinds))
	for _, r := range c.Rules {
		switch r.Access {
		case policy.AccessRead, policy.AccessWrite, policy.AccessExec:
			out[r.Access.String()]++
		default:
			out["net"]++
		}
	}
	return out
}

// collector reads the sources at scrape time, so that the values are the
// backend's own and never a copy that could drift from them.
type collector struct{ opts Options }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- violationsDesc
	ch <- droppedDesc
	ch <- sandboxesDesc
	ch <- rulesDesc
	ch <- watchDroppedDesc
	ch <- undoneDesc
	ch <- landlockDesc
	ch <- buildDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	o := c.opts
	ch <- prometheus.MustNewConstMetric(buildDesc, prometheus.GaugeValue, 1,
		orUnknown(o.Version), orUnknown(o.Commit), runtime.Version(), orUnknown(o.Backend))
	if o.Stats != nil {
		c.collectStats(ch)
	}
	if o.Sandboxes != nil {
		ch <- prometheus.MustNewConstMetric(sandboxesDesc, prometheus.GaugeValue, float64(o.Sandboxes()))
	}
	if o.Rules != nil {
		counts := o.Rules()
		for _, k := range RuleKinds {
			ch <- prometheus.MustNewConstMetric(rulesDesc, prometheus.GaugeValue, float64(counts[k]), k)
		}
	}
	if o.WatchDropped != nil {
		ch <- prometheus.MustNewConstMetric(watchDroppedDesc, prometheus.CounterValue, float64(o.WatchDropped()))
	}
	if o.Undone != nil {
		ch <- prometheus.MustNewConstMetric(undoneDesc, prometheus.CounterValue, float64(o.Undone()))
	}
	if o.Landlock != nil {
		counts := o.Landlock()
		for _, k := range landlockOps {
			ch <- prometheus.MustNewConstMetric(landlockDesc, prometheus.CounterValue, float64(counts[k.op]), string(k.kind), string(k.op))
		}
	}
}

// landlockOps are the operations a Landlock refusal maps to (package
// llaudit): each series exists from the first scrape.
var landlockOps = []struct {
	kind events.Kind
	op   events.Op
}{
	{events.KindFile, events.OpWrite},
	{events.KindFile, events.OpRead},
	{events.KindExec, events.OpExec},
	{events.KindNet, events.OpConnect},
	{events.KindNet, events.OpUnix},
	{events.KindProc, events.OpPtrace},
	{events.KindProc, events.OpSignal},
}

type seriesKey struct {
	kind events.Kind
	op   events.Op
	mode string
}

func (c *collector) collectStats(ch chan<- prometheus.Metric) {
	st, err := c.opts.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(violationsDesc, fmt.Errorf("read the backend's counters: %w", err))
		return
	}
	// Backends may report one kind/op in several entries (per object, per
	// CPU); a series must appear once.
	sums := make(map[seriesKey]uint64)
	for _, k := range knownOps {
		for _, mode := range []string{string(policy.ModeEnforce), string(policy.ModeAudit)} {
			sums[seriesKey{k.kind, k.op, mode}] = 0
		}
	}
	for _, v := range st.Violations {
		if !known(v.Kind, v.Op) {
			// A label value outside the fixed sets would be an
			// unbounded label in disguise; a backend bug, not a series.
			continue
		}
		mode := string(policy.ModeEnforce)
		if v.Audit {
			mode = string(policy.ModeAudit)
		}
		sums[seriesKey{v.Kind, v.Op, mode}] += v.Value
	}
	for k, n := range sums {
		ch <- prometheus.MustNewConstMetric(violationsDesc, prometheus.CounterValue, float64(n), string(k.kind), string(k.op), k.mode)
	}
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(st.EventsDropped))
}

func known(kind events.Kind, op events.Op) bool {
	for _, k := range knownOps {
		if k.kind == kind && k.op == op {
			return true
		}
	}
	return false
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
