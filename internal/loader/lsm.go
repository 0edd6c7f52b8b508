//go:build linux

package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/resolve"
)

// LSMOptions configures OpenLSM.
type LSMOptions struct {
	// ExecDirs are searched for executables that exec name rules match, so
	// that their files are denied by inode too (a symlink or a copy under
	// another name). Nil means resolve.DefaultExecDirs($PATH).
	ExecDirs []string
	// PinPath is a bpffs directory (e.g. /sys/fs/bpf/aigate) where the maps
	// and links are pinned, so enforcement outlives the process: Release
	// leaves them, a later OpenLSM with the same PinPath adopts them
	// (Adopted), Close removes them. Empty: nothing is pinned and Close or
	// the process's exit detaches everything.
	PinPath string
}

// SharedMaps are the maps that every aigate object declares (aigate.h,
// sandbox.h, events.h). The network object loads with them as
// MapReplacements so that one sandbox table, one ring buffer and one set of
// counters serve both; the LSM then delivers its events too.
type SharedMaps struct {
	Sandboxes     *ebpf.Map
	SandboxLevels *ebpf.Map
	Events        *ebpf.Map
	Counters      *ebpf.Map
}

// Replacements returns the maps keyed by their names in the objects, for
// ebpf.CollectionOptions.MapReplacements.
func (m SharedMaps) Replacements() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		MapSandboxes:     m.Sandboxes,
		MapSandboxLevels: m.SandboxLevels,
		MapEvents:        m.Events,
		MapCounters:      m.Counters,
	}
}

// LSM is the BPF-LSM enforcement backend: programs on file_open and
// bprm_check_security that deny the file and exec rules of the sandbox a
// task's cgroup belongs to.
type LSM struct {
	objs   lsmObjects
	links  []link.Link
	table  *sandboxTable
	stream *eventStream

	execDirs []string
	pins     *lsmPins // nil unless pinned

	releaseOnce sync.Once
	releaseErr  error

	mu        sync.Mutex
	sandboxes map[uint32]*lsmSandboxState // by policy id
	byCgroup  map[uint64]*lsmSandboxState
	closed    bool
}

var (
	_ enforce.Backend     = (*LSM)(nil)
	_ enforce.UnixSockets = (*LSM)(nil)
)

// lsmSandboxState is what Add wrote for one sandbox, so Remove can undo it.
type lsmSandboxState struct {
	sb      *enforce.Sandbox
	written []mapEntry
}

type mapEntry struct {
	m   *ebpf.Map
	key any
}

// OpenLSM loads the LSM object and attaches its programs. They allow
// everything until Add enters a sandbox. On error nothing stays attached.
func OpenLSM(opts LSMOptions) (_ *LSM, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("load LSM programs: %w", err)
	}
	l := &LSM{
		execDirs:  opts.ExecDirs,
		sandboxes: map[uint32]*lsmSandboxState{},
		byCgroup:  map[uint64]*lsmSandboxState{},
	}
	if l.execDirs == nil {
		l.execDirs = resolve.DefaultExecDirs(os.Getenv("PATH"))
	}
	spec, err := loadLsm()
	if err != nil {
		return nil, fmt.Errorf("load LSM programs: %w", err)
	}
	var copts ebpf.CollectionOptions
	if opts.PinPath != "" {
		if l.pins, err = openPins(opts.PinPath, spec); err != nil {
			return nil, fmt.Errorf("open LSM pins: %w", err)
		}
		copts.Maps.PinPath = opts.PinPath
	}
	if err := spec.LoadAndAssign(&l.objs, &copts); err != nil {
		if l.pins != nil {
			l.pins.close()
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load LSM programs: %+v", ve)
		}
		return nil, fmt.Errorf("load LSM programs: %w", err)
	}
	defer func() {
		if err != nil {
			// Pinned links stay: they belong to the running sandboxes.
			closeLinks(l.links)
			l.objs.Close()
			if l.pins != nil {
				l.pins.close()
			}
		}
	}()
	l.table = newSandboxTable(l.objs.Sandboxes, l.objs.SandboxLevels)
	if l.pins != nil {
		if err := l.adopt(); err != nil {
			return nil, err
		}
	}
	progs := l.objs.programs()
	for _, name := range lsmProgramOrder {
		var lk link.Link
		if l.pins != nil {
			lk, err = attachPinned(l.pins.dir, name, progs[name])
		} else {
			lk, err = link.AttachLSM(link.LSMOptions{Program: progs[name]})
		}
		if err != nil {
			return nil, fmt.Errorf("attach LSM program %s: %w", name, err)
		}
		l.links = append(l.links, lk)
	}
	l.stream, err = newEventStream(l.objs.Events, "lsm")
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Name is "lsm".
func (l *LSM) Name() string { return "lsm" }

// UnixSockets implements enforce.UnixSockets: unix_stream_connect and
// unix_may_send check the peer socket itself, which is exact.
func (l *LSM) UnixSockets() string {
	return "BPF LSM unix_stream_connect/unix_may_send: by peer (a socket created in the same sandbox, or under an allow_unix path)"
}

// SharedMaps returns the maps the network object shares (see SharedMaps).
func (l *LSM) SharedMaps() SharedMaps {
	return SharedMaps{
		Sandboxes:     l.objs.Sandboxes,
		SandboxLevels: l.objs.SandboxLevels,
		Events:        l.objs.Events,
		Counters:      l.objs.Counters,
	}
}

// Events delivers denials, of the objects sharing the ring buffer too,
// until Close, as the kernel reported them: the agent names them (sandbox,
// rule text), the egress part says which domain an address was for.
func (l *LSM) Events() <-chan events.Event { return l.stream.Events() }

// Flush implements enforce.Flusher: Events is the stream's channel.
func (l *LSM) Flush(ctx context.Context) (uint64, error) { return l.stream.flush(ctx) }

// Stats sums the per-CPU counters (of every object sharing them).
func (l *LSM) Stats() (enforce.Stats, error) {
	return readCounters(l.objs.Counters)
}

// Add fills sb's rules and then enters its cgroup into the sandbox table,
// so that the sandbox is never live with part of its rules.
func (l *LSM) Add(ctx context.Context, sb *enforce.Sandbox) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// rule_set() shifts the id left by setAccessBits and AIGATE_SET_EXCEPT
	// takes bit 31.
	if sb.ID == 0 || sb.ID >= 1<<(31-setAccessBits) {
		return fmt.Errorf("add sandbox %s: policy id %d outside 1..2^%d-1", sb.Name, sb.ID, 31-setAccessBits)
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

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("add sandbox %s: backend closed", sb.Name)
	}
	if _, ok := l.sandboxes[sb.ID]; ok {
		return fmt.Errorf("add sandbox %s: policy id %d in use", sb.Name, sb.ID)
	}
	s := &lsmSandboxState{sb: sb}
	if err := l.writeRules(s); err != nil {
		l.deleteRules(s)
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	if l.pins != nil {
		// Recorded before the sandbox goes live: adoption needs it.
		if err := l.pins.recordSandbox(sb, g.Level); err != nil {
			l.deleteRules(s)
			return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
		}
	}
	mode := sb.Mode
	if mode == "" {
		mode = sb.Policy.Mode
	}
	if err := l.table.add(sb.CgroupID, g.Level, sb.ID, mode == policy.ModeAudit); err != nil {
		l.deleteRules(s)
		if l.pins != nil {
			l.pins.forgetSandbox(sb.ID)
		}
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	l.sandboxes[sb.ID] = s
	l.byCgroup[sb.CgroupID] = s
	return nil
}

// Remove takes the sandbox out of the table first, then deletes its rules.
// Removing an unknown id is a no-op.
func (l *LSM) Remove(id uint32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.remove(id)
}

func (l *LSM) remove(id uint32) error {
	s, ok := l.sandboxes[id]
	if !ok {
		return nil
	}
	err := l.table.remove(s.sb.CgroupID)
	if derr := l.deleteRules(s); derr != nil {
		err = errors.Join(err, derr)
	}
	if l.pins != nil {
		if ferr := l.pins.forgetSandbox(id); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}
	delete(l.sandboxes, id)
	delete(l.byCgroup, s.sb.CgroupID)
	if err != nil {
		return fmt.Errorf("remove sandbox %s: %w", s.sb.Name, err)
	}
	return nil
}

// Close removes every sandbox (the shared maps may outlive this object in
// another one), detaches the programs, removes the pins when pinned and
// closes the event stream.
func (l *LSM) Close() error {
	l.mu.Lock()
	if l.closed { // after Release: the pins stay
		l.mu.Unlock()
		return l.release()
	}
	var errs []error
	for id := range l.sandboxes {
		if err := l.remove(id); err != nil {
			errs = append(errs, err)
		}
	}
	l.closed = true
	l.mu.Unlock()

	if l.pins != nil {
		if err := l.unpinAll(); err != nil {
			errs = append(errs, fmt.Errorf("remove LSM pins: %w", err))
		}
	}
	return errors.Join(append(errs, l.release())...)
}

// Release closes every file descriptor and stops the event stream but
// leaves the pins, so the programs stay attached and the sandboxes stay
// enforced without this process: what an agent does before it exits to be
// restarted (or what a crash amounts to). Without a PinPath it is Close.
func (l *LSM) Release() error {
	if l.pins == nil {
		return l.Close()
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.release()
}

func (l *LSM) release() error {
	l.releaseOnce.Do(func() { l.releaseErr = l.doRelease() })
	return l.releaseErr
}

func (l *LSM) doRelease() error {
	var errs []error
	if err := closeLinks(l.links); err != nil {
		errs = append(errs, fmt.Errorf("detach LSM programs: %w", err))
	}
	l.links = nil
	if err := l.stream.close(); err != nil {
		errs = append(errs, err)
	}
	if err := l.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close LSM programs: %w", err))
	}
	if l.pins != nil {
		l.pins.close()
	}
	return errors.Join(errs...)
}

// PinDir is LSMOptions.PinPath: where the pins are, "" when not pinned.
func (l *LSM) PinDir() string {
	if l.pins == nil {
		return ""
	}
	return l.pins.dir
}

// Adopted lists the sandboxes found in the pins when OpenLSM ran, still
// enforced and now managed by this LSM (Remove ends them): ID, Name,
// CgroupID, CgroupPath and Mode are set, Policy is nil. Pinned sandboxes
// whose cgroup had gone were removed instead.
func (l *LSM) Adopted() []enforce.Sandbox {
	if l.pins == nil {
		return nil
	}
	return append([]enforce.Sandbox(nil), l.pins.adopted...)
}

// Claim gives an adopted sandbox back what the kernel does not keep: its
// compiled policy and name. The policy must be the
// one it was added with (recompiled from the same sources): the rules in
// the maps are not rewritten. sb.ID and sb.CgroupID must match.
func (l *LSM) Claim(sb *enforce.Sandbox) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.sandboxes[sb.ID]
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
