//go:build linux

package lsm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Options configures Open: the loader's.
type Options = loader.LSMOptions

// Backend is the BPF-LSM enforcement backend: programs on file_open,
// bprm_check_security and the other hooks of lsm.c deny the file, exec,
// process and socket rules of the sandbox a task's cgroup belongs to.
type Backend struct {
	obj *loader.LSM

	mu        sync.Mutex
	sandboxes map[uint32]*sandboxState // by policy id
	adopted   []enforce.Sandbox
	closed    bool
}

var (
	_ enforce.Backend        = (*Backend)(nil)
	_ enforce.UnixSockets    = (*Backend)(nil)
	_ enforce.Flusher        = (*Backend)(nil)
	_ enforce.Pinner         = (*Backend)(nil)
	_ enforce.UserNamespaces = (*Backend)(nil)
)

// sandboxState is a sandbox and what Add wrote for it, so Remove can undo
// it.
type sandboxState struct {
	sb    *enforce.Sandbox
	rules *loader.Rules
}

// Open loads the LSM object and attaches its programs. They allow
// everything until Add enters a sandbox. With a PinPath, the sandboxes
// found live in the pins are adopted (Adopted). On error nothing stays
// attached.
func Open(opts Options) (*Backend, error) {
	obj, err := loader.OpenLSM(opts)
	if err != nil {
		return nil, err
	}
	b := &Backend{obj: obj, sandboxes: map[uint32]*sandboxState{}}
	for _, a := range obj.Found() {
		sb := a.Sandbox
		b.sandboxes[sb.ID] = &sandboxState{sb: &sb, rules: a.Rules}
		b.adopted = append(b.adopted, sb)
	}
	return b, nil
}

// Name is "lsm".
func (b *Backend) Name() string { return "lsm" }

// UnixSockets implements enforce.UnixSockets: unix_stream_connect and
// unix_may_send check the peer socket itself, which is exact.
func (b *Backend) UnixSockets() string {
	return "BPF LSM unix_stream_connect/unix_may_send: by peer (a socket created in the same sandbox, or under an allow_unix path)"
}

// SharedMaps returns the maps the network object shares (loader.SharedMaps).
func (b *Backend) SharedMaps() loader.SharedMaps { return b.obj.SharedMaps() }

// RefusesUserNamespaces implements enforce.UserNamespaces: true where the
// kernel has the userns_create hook and the program is attached.
func (b *Backend) RefusesUserNamespaces() bool { return b.obj.RefusesUserNamespaces() }

// Events delivers denials, of the objects sharing the ring buffer too,
// until Close, as the kernel reported them: the agent names them (sandbox,
// rule text), the egress part says which domain an address was for.
func (b *Backend) Events() <-chan events.Event { return b.obj.Events() }

// Flush implements enforce.Flusher: Events is the ring buffer's stream.
func (b *Backend) Flush(ctx context.Context) (uint64, error) { return b.obj.Flush(ctx) }

// Stats sums the per-CPU counters (of every object sharing them).
func (b *Backend) Stats() (enforce.Stats, error) { return b.obj.Stats() }

// Add fills sb's rules and then enters its cgroup into the sandbox table,
// so that the sandbox is never live with part of its rules.
func (b *Backend) Add(ctx context.Context, sb *enforce.Sandbox) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := loader.CheckPolicyID(sb.ID); err != nil {
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	if sb.Policy == nil {
		return fmt.Errorf("add sandbox %s: no policy", sb.Name)
	}
	g, err := cgroup.Open(sb.CgroupPath)
	if err != nil {
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	if g.ID != sb.CgroupID {
		return fmt.Errorf("add sandbox %s: cgroup %s has id %d, not %d", sb.Name, sb.CgroupPath, g.ID, sb.CgroupID)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("add sandbox %s: backend closed", sb.Name)
	}
	if _, ok := b.sandboxes[sb.ID]; ok {
		return fmt.Errorf("add sandbox %s: policy id %d in use", sb.Name, sb.ID)
	}
	rules, err := b.obj.WriteRules(sb)
	if err != nil {
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	mode := sb.Mode
	if mode == "" {
		mode = sb.Policy.Mode
	}
	if err := b.obj.Enter(sb, g.Level, mode == policy.ModeAudit); err != nil {
		b.obj.DeleteRules(rules)
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	b.sandboxes[sb.ID] = &sandboxState{sb: sb, rules: rules}
	return nil
}

// Remove takes the sandbox out of the table first, then deletes its rules.
// Removing an unknown id is a no-op.
func (b *Backend) Remove(id uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.remove(id)
}

func (b *Backend) remove(id uint32) error {
	s, ok := b.sandboxes[id]
	if !ok {
		return nil
	}
	err := b.obj.Leave(s.sb.CgroupID)
	if derr := b.obj.DeleteRules(s.rules); derr != nil {
		err = errors.Join(err, derr)
	}
	if ferr := b.obj.Forget(id); ferr != nil {
		err = errors.Join(err, ferr)
	}
	delete(b.sandboxes, id)
	if err != nil {
		return fmt.Errorf("remove sandbox %s: %w", s.sb.Name, err)
	}
	return nil
}

// Close removes every sandbox (the shared maps may outlive this object in
// another one), detaches the programs, removes the pins when pinned and
// closes the event stream.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed { // after Release: the pins stay
		b.mu.Unlock()
		return b.obj.Release()
	}
	var errs []error
	for id := range b.sandboxes {
		if err := b.remove(id); err != nil {
			errs = append(errs, err)
		}
	}
	b.closed = true
	b.mu.Unlock()

	if err := b.obj.Unpin(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, b.obj.Release())...)
}

// Release closes every file descriptor and stops the event stream but
// leaves the pins, so the programs stay attached and the sandboxes stay
// enforced without this process: what an agent does before it exits to be
// restarted (or what a crash amounts to). Without a PinPath it is Close.
func (b *Backend) Release() error {
	if b.obj.PinDir() == "" {
		return b.Close()
	}
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.obj.Release()
}

// PinDir is Options.PinPath: where the pins are, "" when not pinned.
func (b *Backend) PinDir() string { return b.obj.PinDir() }

// Adopted lists the sandboxes found in the pins when Open ran, still
// enforced and now managed by this backend (Remove ends them): ID, Name,
// CgroupID, CgroupPath and Mode are set, Policy is nil. Pinned sandboxes
// whose cgroup had gone were removed instead.
func (b *Backend) Adopted() []enforce.Sandbox {
	return append([]enforce.Sandbox(nil), b.adopted...)
}

// Claim gives an adopted sandbox back what the kernel does not keep: its
// compiled policy and name. The policy must be the one it was added with
// (recompiled from the same sources): the rules in the maps are not
// rewritten. sb.ID and sb.CgroupID must match.
func (b *Backend) Claim(sb *enforce.Sandbox) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sandboxes[sb.ID]
	if !ok || s.sb.CgroupID != sb.CgroupID {
		return fmt.Errorf("claim sandbox %s: no adopted sandbox with policy id %d and cgroup %d", sb.Name, sb.ID, sb.CgroupID)
	}
	c := *sb
	if c.CgroupPath == "" {
		c.CgroupPath = s.sb.CgroupPath
	}
	s.sb = &c
	return nil
}
