package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/aigate-dev/aigate/internal/enforce"
)

// filePinner is what the BPF-LSM side offers when opened with a PinPath.
type filePinner interface {
	PinDir() string
	Adopted() []enforce.Sandbox
	Claim(sb *enforce.Sandbox) error
	Release() error
}

// netPinner is what the egress side offers over a pinned network object.
type netPinner interface {
	Adopt(ctx context.Context, sb *enforce.Sandbox) error
	Pinned() []uint32
	Remove(id uint32) error
	Release() error
}

// Pinned is a Composite whose both parts pin their state under one bpffs
// directory (the LSM's maps and links there, the network object's in its
// "net" subdirectory): it implements agent.Pinner, so a sandbox outlives
// the agent, enforced by the kernel alone, and the next agent adopts it.
// Only the BPF-LSM backend pins; fanotify's enforcement is a process.
type Pinned struct {
	*Composite
	pfiles filePinner
	pnet   netPinner
}

// newPinned composes the pinned parts and removes the network rules that
// the LSM found no live sandbox for (their cgroup is gone, or a crash came
// in the middle of Add): every other pinned sandbox is the agent's to
// claim or end.
func newPinned(files interface {
	enforce.Backend
	filePinner
}, net interface {
	netPart
	netPinner
}) (*Pinned, error) {
	p := &Pinned{Composite: compose(files, net), pfiles: files, pnet: net}
	live := map[uint32]bool{}
	for _, sb := range files.Adopted() {
		live[sb.ID] = true
	}
	var errs []error
	for _, id := range net.Pinned() {
		if !live[id] {
			errs = append(errs, net.Remove(id))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(fmt.Errorf("remove stale pinned network rules: %w", err), p.Release())
	}
	return p, nil
}

// PinDir is the bpffs directory holding both parts' pins.
func (p *Pinned) PinDir() string { return p.pfiles.PinDir() }

// Adopted lists the sandboxes found pinned and alive at open (the LSM's
// list: it owns the sandbox table), Policy nil.
func (p *Pinned) Adopted() []enforce.Sandbox { return p.pfiles.Adopted() }

// Claim hands an adopted sandbox its recompiled policy: the LSM takes it
// for the rule texts of its events, and the egress part rewrites the
// network policy and steers DNS to a new proxy (egress.Adopt). On error
// the sandbox stays enforced as it is; the caller kills its processes and
// then Removes it.
func (p *Pinned) Claim(sb *enforce.Sandbox) error {
	if err := p.pfiles.Claim(sb); err != nil {
		return err
	}
	return p.pnet.Adopt(context.Background(), sb)
}

// Release closes both parts and leaves the pins: every sandbox stays
// enforced with no process holding anything, as after a crash.
func (p *Pinned) Release() error {
	return p.shut(func() error { return errors.Join(p.pfiles.Release(), p.pnet.Release()) })
}

// Close ends every sandbox and removes the pins of both parts, and then
// the pin directory, which the LSM could not remove while the network
// object's subdirectory was still in it.
func (p *Pinned) Close() error {
	dir := p.PinDir()
	err := p.Composite.Close()
	if rerr := os.Remove(dir); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && !errors.Is(rerr, syscall.ENOTEMPTY) {
		err = errors.Join(err, fmt.Errorf("remove pin directory: %w", rerr))
	}
	return err
}
