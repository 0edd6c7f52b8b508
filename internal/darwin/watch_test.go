package darwin

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// rulesRunner answers `pfctl -s rules` with the next of its outputs (the
// last one forever after).
type rulesRunner struct {
	mu    sync.Mutex
	outs  []string
	calls int
}

func (r *rulesRunner) Run(_ context.Context, name string, args []string, _ []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := min(r.calls, len(r.outs)-1)
	r.calls++
	return []byte(r.outs[i]), nil
}

// TestWatchAnchorNoticesLostCall: a VPN reloading the main ruleset drops
// the anchor call; the session hears of it at the next check.
func TestWatchAnchorNoticesLostCall(t *testing.T) {
	ok := "anchor \"com.aigate\" all\nanchor \"com.apple/*\" all\n"
	r := &rulesRunner{outs: []string{ok, ok, "anchor \"com.vpn.killswitch\" all\n"}}
	lost := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchAnchor(ctx, r, time.Millisecond, func(why string) { lost <- why })
	}()
	select {
	case why := <-lost:
		if !strings.Contains(why, "does not reference com.aigate") {
			t.Errorf("why = %q", why)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lost anchor call not reported")
	}
	<-done // the watch ends after reporting
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls != 3 {
		t.Errorf("%d checks, want 3 (two fine, one lost)", r.calls)
	}
}

func TestWatchAnchorStops(t *testing.T) {
	r := &rulesRunner{outs: []string{"anchor \"com.aigate\" all\n"}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchAnchor(ctx, r, time.Millisecond, func(why string) { t.Errorf("lost: %s", why) })
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop")
	}
}
