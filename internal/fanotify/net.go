//go:build linux

package fanotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/loader"
	"go.uber.org/zap"
)

// Network rules in this backend come from the cgroup sock_addr programs of
// internal/loader, run standalone: they keep their own sandbox table, ring
// buffer and counters, which this file folds into the backend's Events and
// Stats so that callers see one backend.

func (b *Backend) openNet() error {
	if b.opts.NoNetwork {
		return nil
	}
	n, err := loader.OpenNet(loader.NetOptions{Backend: "fanotify"})
	if err != nil {
		return fmt.Errorf("load network programs: %w", err)
	}
	b.net = n
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for ev := range n.Events() {
			b.emit(ev)
		}
	}()
	return nil
}

// addNet enforces sb's egress policy on its cgroup. Allowed domains are
// resolved once here unless Options.Resolve is set (the DNS proxy keeps
// them fresh with UpdateAddrs through NetRules).
func (b *Backend) addNet(ctx context.Context, sb *enforce.Sandbox) error {
	if b.net == nil {
		return nil
	}
	g, err := cgroup.Open(sb.CgroupPath)
	if err != nil {
		return err
	}
	resolve := b.opts.Resolve
	if resolve == nil {
		resolve = func(ctx context.Context, sb *enforce.Sandbox) (map[string][]netip.Addr, error) {
			return loader.ResolveDomains(ctx, sb.Policy.Net.Domains, net.DefaultResolver)
		}
	}
	resolved, rerr := resolve(ctx, sb)
	if rerr != nil {
		b.log.Warn("some allowed domains did not resolve: connections to them are refused",
			zap.String("sandbox", sb.Name), zap.Error(rerr))
	}
	if err := b.net.AddSandbox(sb.ID, g, sb.Mode == "audit"); err != nil {
		return err
	}
	if err := b.net.SetPolicy(sb.ID, sb.Policy.Net, resolved); err != nil {
		return errors.Join(err, b.net.Remove(sb.ID))
	}
	if err := b.net.Attach(sb.ID, sb.CgroupPath); err != nil {
		return errors.Join(err, b.net.Remove(sb.ID))
	}
	return nil
}

func (b *Backend) removeNet(id uint32) error {
	if b.net == nil {
		return nil
	}
	return b.net.Remove(id)
}

// NetRules gives the DNS proxy the network side of this backend, or nil
// when it runs without (Options.NoNetwork).
func (b *Backend) NetRules() *loader.Net { return b.net }

// mergeStats adds the network counters to the file and exec ones.
func mergeStats(a, n enforce.Stats) enforce.Stats {
	a.EventsDropped += n.EventsDropped
	a.Violations = append(a.Violations, n.Violations...)
	sort.SliceStable(a.Violations, func(i, j int) bool { return a.Violations[i].Kind < a.Violations[j].Kind })
	return a
}
