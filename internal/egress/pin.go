//go:build linux

package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
)

// pinnedRules is what a *loader.Net opened with a PinPath adds: its
// sandboxes' policies and links outlive the process.
type pinnedRules interface {
	PinDir() string
	TakeAdopted() []loader.AdoptedNet
	Release() error
}

// Pinned lists the policy ids whose network rules were found pinned when
// the Net was opened and that are neither adopted (Adopt) nor removed yet.
func (e *Egress) Pinned() []uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]uint32, 0, len(e.pinned))
	for id := range e.pinned {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Adopt takes over the network rules of a sandbox that a previous process
// left pinned (its cgroup links and maps), with the policy recompiled from
// the sandbox's sources: the policy is written again, which drops the
// addresses the dead process's DNS proxy had learned, and a new proxy is
// started and the cgroup's DNS steered to it (ModeProxy), or the domains
// resolved again (ModeResolve).
//
// Between the old process's death and Adopt the sandbox's DNS fails: its
// queries are steered to the dead proxy's port, where nothing answers
// (a connection refused, at worst a timeout). Addresses learned before
// stay allowed meanwhile: nothing expires them, and they were answers to
// this sandbox's own allowed queries. A local process that binds the dead
// port meanwhile gets the queries, but cannot widen what the sandbox may
// reach: only the agent writes the allow tries.
//
// On error the sandbox stays registered with what is enforced (the pinned
// rules, or part of the new policy): the caller kills its processes and
// then calls Remove, never Remove first, which would free their network.
func (e *Egress) Adopt(ctx context.Context, sb *enforce.Sandbox) error {
	if sb == nil || sb.Policy == nil || sb.ID == 0 {
		return errors.New("adopt network rules: needs a sandbox id and a compiled policy")
	}
	e.mu.Lock()
	pinned := e.pinned[sb.ID]
	if pinned != nil && e.sandboxes[sb.ID] == nil {
		delete(e.pinned, sb.ID)
	}
	e.mu.Unlock()
	if pinned == nil {
		return fmt.Errorf("adopt network rules of %s: policy id %d was not found pinned", sb.Name, sb.ID)
	}
	if err := e.add(ctx, sb, pinned); err != nil {
		return err
	}
	e.mu.Lock()
	s := e.sandboxes[sb.ID]
	e.mu.Unlock()
	if s != nil && s.proxy == nil {
		// Not (or no longer) steered: a steering entry left pinned would
		// point at a dead port.
		if err := e.net.ClearDNSProxy(sb.ID); err != nil {
			return fmt.Errorf("adopt network rules of %s: %w", sb.Name, err)
		}
	}
	return nil
}

// Release stops the proxies and re-resolve loops and closes the Net, but
// leaves every sandbox's network rules pinned and enforced, as a crash of
// the process would: the proxies withdraw nothing, so the learned
// addresses stay allowed, and DNS fails until a new process adopts the
// sandboxes (Adopt). Only a Net opened with a PinPath can be released.
func (e *Egress) Release() error {
	p, ok := e.net.(pinnedRules)
	if !ok || p.PinDir() == "" {
		return errors.New("release network rules: the network object pins nothing")
	}
	var err error
	e.closeOnce.Do(func() {
		e.released.Store(true)
		e.mu.Lock()
		e.closed = true
		var all []*sandbox
		for id, s := range e.sandboxes {
			all = append(all, s)
			delete(e.sandboxes, id)
		}
		pinned := e.pinned
		e.pinned = map[uint32]*written{}
		e.mu.Unlock()
		var errs []error
		for _, s := range all {
			if s.stop != nil {
				s.stop()
				<-s.loopDone
			}
			if s.proxy != nil {
				errs = append(errs, s.proxy.Close()) // withdraws nothing: released
			}
			errs = append(errs, s.w.links.Close()) // pinned: stays attached
		}
		for _, w := range pinned {
			errs = append(errs, w.links.Close())
		}
		errs = append(errs, p.Release())
		e.wg.Wait()
		e.outMu.Lock()
		e.outClosed = true
		close(e.out)
		e.outMu.Unlock()
		err = errors.Join(errs...)
		e.closeErr = err
	})
	return err
}

// sink is the AddrSink the proxy of sandbox s writes to: s's rules, until
// Release, after which a closing proxy's withdrawals must not reach the
// pinned maps.
type sink struct {
	e *Egress
	s *sandbox
}

func (s sink) UpdateAddrs(_ uint32, d policy.DomainEntry, add, remove []netip.Addr) error {
	if s.e.released.Load() {
		return nil
	}
	return s.e.updateAddrs(s.s, d, add, remove)
}

func (s sink) AddrInUse(policyID uint32, addr netip.Addr) (bool, error) {
	return s.e.net.AddrInUse(policyID, addr)
}
