//go:build linux

package agent

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/egress"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// netFake is a fake backend with an egress part, as backend.Composite is.
type netFake struct {
	*fakeBackend
	modes map[uint32]egress.Mode
}

// UnixSockets is what backend.Composite says with a fanotify file part:
// its network object's cgroup connect_unix programs.
func (n *netFake) UnixSockets() string { return loader.UnixSocketEnforcement() }

func (n *netFake) NetStatus(id uint32) (egress.Status, bool) {
	m, ok := n.modes[id]
	if !ok {
		return egress.Status{}, false
	}
	return egress.Status{Mode: m, Reason: "test reason " + string(m)}, true
}

// Status and list carry what `aigate status` shows: the egress mode of
// each sandbox, its event count, and the unix-socket confinement.
func TestStatusReportsEnforcement(t *testing.T) {
	testutil.HostOnly(t)
	parent := testParent(t)
	be := &netFake{fakeBackend: newFake(), modes: map[uint32]egress.Mode{1: egress.ModeResolve}}
	a, err := New(Config{Backend: be, Socket: filepath.Join(t.TempDir(), "aigate.sock"), Parent: parent, Build: "test", Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Serve(t, a.Serve, a.Close)
	c := api.NewClient(a.Socket())

	s, err := c.CreateSandbox(ctx, createReq(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Sandbox.ID != 1 {
		t.Fatalf("sandbox id %d, want 1 (the fake's mode is keyed by it)", s.Sandbox.ID)
	}
	sb, ok := be.sandbox(1)
	if !ok {
		t.Fatal("backend does not know the sandbox")
	}
	for range 3 {
		be.deny(events.Event{Kind: events.KindFile, Op: events.OpRead, CgroupID: sb.CgroupID, Path: "/x/.env"}, false)
	}
	waitFor(t, "three events counted", func() bool {
		l, err := c.List(ctx)
		return err == nil && len(l) == 1 && l[0].Events == 3
	})
	l, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l[0].DNS != "periodic resolve" || l[0].DNSReason != "test reason periodic resolve" {
		t.Errorf("list dns = %q (%q)", l[0].DNS, l[0].DNSReason)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The real kernel's answer: the fake has an egress part, so the agent
	// reports loader's unix-socket confinement.
	want := "cgroup connect_unix"
	if loader.ProbeUnixSockets() != nil {
		want = "none: "
	}
	if !strings.HasPrefix(st.Unix, want) {
		t.Errorf("status unix = %q, want it to start with %q", st.Unix, want)
	}
	if st.Backend != "fake" || st.Sandboxes != 1 {
		t.Errorf("status = %+v", st)
	}
}
