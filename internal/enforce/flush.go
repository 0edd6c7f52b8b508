package enforce

import (
	"context"
	"time"
)

// AwaitCount waits until load() reaches n: a Flusher's stage that may
// still hold events it took (a forwarding goroutine between receive and
// send) waits with it for them to pass. It polls, briefly: the events it
// waits for are already in memory.
func AwaitCount(ctx context.Context, load func() uint64, n uint64) error {
	for d := 20 * time.Microsecond; load() < n; d = min(2*d, time.Millisecond) {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
