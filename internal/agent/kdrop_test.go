//go:build linux

package agent

import (
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestSessionToldOfKernelDrops: events the backend's kernel buffer had no
// room for reach no session, and the kernel does not know whose they
// were; the session's end says how many were dropped while its command
// ran, so that `aigate run` does not present a short summary as complete.
func TestSessionToldOfKernelDrops(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	ta.be.deny(events.Event{Kind: events.KindNet, Op: events.OpConnect}, true) // before: not this run's
	s, child, sb := sleepingSandbox(t, ta)
	e := events.Event{CgroupID: sb.CgroupID, TGID: 42, Comm: "flood", Kind: events.KindNet, Op: events.OpConnect}
	ta.be.deny(e, false)
	for range 3 {
		ta.be.deny(e, true)
	}
	ended, err := s.End(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if ended.Events != 1 || ended.KernelDropped != 3 {
		t.Errorf("ended with %d events, %d dropped by the kernel; want 1 and 3", ended.Events, ended.KernelDropped)
	}
}
