package run

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/events"
)

// TestReportSaysWhatWasLost: the summary counts a folded event as its
// denials, and the lines at the end say what did not arrive: lost on the
// way, or dropped by the kernel while the command ran (of this sandbox
// or another), so a short summary is never presented as complete.
func TestReportSaysWhatWasLost(t *testing.T) {
	var errb bytes.Buffer
	f := &cmdutil.Factory{Err: &errb, Log: zap.NewNop()}
	r := newRunReporter(f, reportOptions{})
	r.event(events.Event{Kind: events.KindNet, Op: events.OpConnect, Comm: "flood", Count: 1000})
	r.finish(0, 1000, 250)
	out := errb.String()
	for _, want := range []string{
		"(repeated 999 more times)",
		"the kernel dropped 250 events while the command ran",
		"1000 operations blocked (1000 connect)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "lost on the way") {
		t.Errorf("nothing was lost on the way:\n%s", out)
	}
}
