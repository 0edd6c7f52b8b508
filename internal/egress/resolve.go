//go:build linux

package egress

import (
	"context"
	"maps"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// resolveTimeout bounds one round of resolving a sandbox's domains.
const resolveTimeout = 15 * time.Second

// startResolve resolves s's allowed domains once (Add waits for it, so the
// first connection finds them) and then every ResolveEvery until teardown.
// A name that fails to resolve only leaves the policy without it: Add does
// not fail, the connection does, and Status says why.
func (e *Egress) startResolve(ctx context.Context, s *sandbox) error {
	if err := e.resolveOnce(ctx, s); err != nil {
		return err
	}
	loopCtx, stop := context.WithCancel(context.Background())
	s.stop, s.loopDone = stop, make(chan struct{})
	go func() {
		defer close(s.loopDone)
		t := time.NewTicker(e.opts.ResolveEvery)
		defer t.Stop()
		for {
			select {
			case <-loopCtx.Done():
				return
			case <-t.C:
				if err := e.resolveOnce(loopCtx, s); err != nil && loopCtx.Err() == nil {
					e.log.Warn("update allowed addresses", zap.String("sandbox", s.sb.Name), zap.Error(err))
				}
			}
		}
	}()
	return nil
}

// resolveOnce resolves the domains and writes the policy with the result.
// Names that fail this round keep their previous addresses, so a resolver
// hiccup does not cut a working sandbox off. The error is that of writing
// the policy; resolution failures go to Status and the log.
func (e *Egress) resolveOnce(ctx context.Context, s *sandbox) error {
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	got, rerr := ResolveDomains(rctx, s.sb.Policy.Net.Domains, e.opts.Resolver)
	cancel()
	if err := ctx.Err(); err != nil {
		return err // Add was cancelled, or teardown stopped the loop
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	merged := maps.Clone(s.resolved)
	if merged == nil {
		merged = map[string][]netip.Addr{}
	}
	maps.Copy(merged, got)
	if err := e.setPolicy(s, s.sb.Policy.Net, merged); err != nil {
		return err
	}
	s.resolved, s.lastErr = merged, rerr
	if rerr != nil {
		e.log.Warn("some allowed domains did not resolve: connections to them are refused until they do",
			zap.String("sandbox", s.sb.Name), zap.Error(rerr))
	}
	return nil
}
