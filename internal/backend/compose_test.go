//go:build linux

package backend

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/egress"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
)

// part is a fake half of a Composite that records what it is asked.
type part struct {
	name    string
	log     *[]string
	failAdd error
	live    map[uint32]bool
	ev      chan events.Event
	stats   enforce.Stats
}

func newPart(name string, log *[]string) *part {
	return &part{name: name, log: log, live: map[uint32]bool{}, ev: make(chan events.Event, 4)}
}

func (p *part) Name() string { return p.name }
func (p *part) Add(_ context.Context, sb *enforce.Sandbox) error {
	*p.log = append(*p.log, p.name+" add")
	if p.failAdd != nil {
		return p.failAdd
	}
	p.live[sb.ID] = true
	return nil
}
func (p *part) Remove(id uint32) error {
	*p.log = append(*p.log, p.name+" remove")
	delete(p.live, id)
	return nil
}
func (p *part) Events() <-chan events.Event   { return p.ev }
func (p *part) Stats() (enforce.Stats, error) { return p.stats, nil }
func (p *part) Close() error {
	*p.log = append(*p.log, p.name+" close")
	close(p.ev)
	return nil
}
func (p *part) DomainOf(uint64, netip.Addr) string { return "" }
func (p *part) GuardIDEPort(uint32, uint16) error  { return nil }
func (p *part) Status(uint32) (egress.Status, bool) {
	return egress.Status{Mode: egress.ModeProxy}, true
}

func TestCompositeAddIsAllOrNothing(t *testing.T) {
	sb := &enforce.Sandbox{ID: 4, Name: "s"}
	t.Run("files fail", func(t *testing.T) {
		var log []string
		files, net := newPart("files", &log), newPart("net", &log)
		files.failAdd = errors.New("add sandbox s: no marks")
		c := compose(files, net)
		defer c.Close()
		if err := c.Add(context.Background(), sb); err == nil || err.Error() != "add sandbox s: no marks" {
			t.Fatalf("err = %v", err)
		}
		if len(net.live)+len(files.live) != 0 {
			t.Fatalf("left live: files %v net %v", files.live, net.live)
		}
		if want := []string{"net add", "files add", "net remove"}; !slices.Equal(log, want) {
			t.Fatalf("calls %v, want %v", log, want)
		}
	})
	t.Run("network fails", func(t *testing.T) {
		var log []string
		files, net := newPart("files", &log), newPart("net", &log)
		net.failAdd = errors.New("attach: EPERM")
		c := compose(files, net)
		defer c.Close()
		if err := c.Add(context.Background(), sb); err == nil {
			t.Fatal("Add succeeded")
		}
		if len(files.live) != 0 || slices.Contains(log, "files add") {
			t.Fatalf("file rules went live without network rules: %v", log)
		}
	})
	t.Run("remove and close in reverse", func(t *testing.T) {
		var log []string
		files, net := newPart("files", &log), newPart("net", &log)
		c := compose(files, net)
		if err := c.Add(context.Background(), sb); err != nil {
			t.Fatal(err)
		}
		if err := c.Remove(sb.ID); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		want := []string{"net add", "files add", "files remove", "net remove", "files close", "net close"}
		if !slices.Equal(log, want) {
			t.Fatalf("calls %v, want %v", log, want)
		}
	})
}

func TestCompositeMergesEventsAndStats(t *testing.T) {
	var log []string
	files, net := newPart("files", &log), newPart("net", &log)
	files.stats = enforce.Stats{EventsDropped: 1, Violations: []enforce.Counter{{Kind: events.KindNet, Op: events.OpConnect, Value: 2}}}
	net.stats = enforce.Stats{Violations: []enforce.Counter{
		{Kind: events.KindNet, Op: events.OpConnect, Value: 1}, {Kind: events.KindNet, Op: events.OpDNS, Value: 3},
	}}
	c := compose(files, net)
	files.ev <- events.Event{Op: events.OpRead}
	net.ev <- events.Event{Op: events.OpDNS}
	got := map[events.Op]bool{}
	for range 2 {
		got[(<-c.Events()).Op] = true
	}
	if !got[events.OpRead] || !got[events.OpDNS] {
		t.Fatalf("events %v", got)
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := []enforce.Counter{{Kind: events.KindNet, Op: events.OpConnect, Value: 3}, {Kind: events.KindNet, Op: events.OpDNS, Value: 3}}
	if !slices.Equal(st.Violations, want) || st.EventsDropped != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range c.Events() {
	}
}

// peerPart is a file part that confines unix sockets itself, as the LSM does.
type peerPart struct{ *part }

func (peerPart) UnixSockets() string { return "by peer" }

// The Composite says what its file part says about unix sockets, and
// otherwise what its network object's cgroup programs do.
func TestCompositeUnixSockets(t *testing.T) {
	var log []string
	c := compose(peerPart{newPart("files", &log)}, newPart("net", &log))
	defer c.Close()
	if got := c.UnixSockets(); got != "by peer" {
		t.Errorf("with a peer-checking file part: %q", got)
	}
	c2 := compose(newPart("files", &log), newPart("net", &log))
	defer c2.Close()
	if got, want := c2.UnixSockets(), loader.UnixSocketEnforcement(); got != want {
		t.Errorf("without: %q, want %q", got, want)
	}
}

// TestCompositeAddWaitsForEnter: the helper that sb.Enter moves in is
// given its go-ahead once Add has returned, so Add must not return before
// the move has (else the command could start outside its sandbox) and
// must fail, with nothing left enforcing, when the move failed.
func TestCompositeAddWaitsForEnter(t *testing.T) {
	t.Run("waits", func(t *testing.T) {
		var log []string
		files, net := newPart("files", &log), newPart("net", &log)
		c := compose(files, net)
		defer c.Close()
		release := make(chan struct{})
		entering := make(chan struct{})
		sb := &enforce.Sandbox{ID: 4, Name: "s", Enter: func() error {
			close(entering)
			<-release
			return nil
		}}
		added := make(chan error, 1)
		go func() { added <- c.Add(context.Background(), sb) }()
		<-entering
		select {
		case err := <-added:
			t.Fatalf("Add returned (%v) while the move into the cgroup was still under way", err)
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		if err := <-added; err != nil {
			t.Fatal(err)
		}
		if !files.live[4] || !net.live[4] {
			t.Fatalf("not live: files %v net %v", files.live, net.live)
		}
	})
	t.Run("move fails", func(t *testing.T) {
		var log []string
		files, net := newPart("files", &log), newPart("net", &log)
		c := compose(files, net)
		defer c.Close()
		calls := 0
		sb := &enforce.Sandbox{ID: 4, Name: "s", Enter: func() error {
			calls++
			return errors.New("process 42 exited before it could be placed")
		}}
		err := c.Add(context.Background(), sb)
		if err == nil || !strings.Contains(err.Error(), "exited before it could be placed") {
			t.Fatalf("Add = %v, want the move's error", err)
		}
		if calls != 1 {
			t.Fatalf("Enter called %d times, want once", calls)
		}
		if len(net.live)+len(files.live) != 0 {
			t.Fatalf("left live: files %v net %v", files.live, net.live)
		}
	})
}
