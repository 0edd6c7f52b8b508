//go:build linux

package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/kallsyms"
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
	// (Adopted), Unpin removes them. Empty: nothing is pinned and Release
	// or the process's exit detaches everything.
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

	// kept is the kept set of the Net these maps are of (NetOptions.Keep),
	// where an object sharing them is kept too.
	kept *keptSet
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

// LSMObjects are lsm.c's programs and maps as bpf2go generated them;
// LSMScratch is a value of its scratch_map (per CPU, per slot).
type (
	LSMObjects = lsmObjects
	LSMScratch = lsmScratch
)

// LSM is lsm.c loaded and its programs attached: the maps, the links, the
// sandbox table, the ring buffer and, when pinned, the pins. It writes and
// deletes what the BPF-LSM backend (internal/lsm) tells it to; which
// sandboxes exist is the backend's bookkeeping. Not safe for concurrent
// writes: the backend serialises them.
type LSM struct {
	objs   lsmObjects
	links  []link.Link
	table  *sandboxTable
	stream *eventStream

	execDirs []string
	pins     *lsmPins // nil unless pinned
	userns   bool     // the userns_create program is attached (lsm_hooks.go)
	copies   bool     // the copy programs are attached (lsm_copy.go)
	stubbed  []string // programs swapped for stubs, never attached (lsm_hooks.go, lsm_copy.go)
	sums     sumCache // content hashes of deny_exec binaries (lsm_copy.go)
	noCache  error    // why file_open caches no verdict (setRenameLock), nil when it does
	found    []Adopted

	releaseOnce sync.Once
	releaseErr  error
}

// lsmSandboxState is what WriteRules wrote for one sandbox, so that
// DeleteRules can undo it.
type lsmSandboxState struct {
	sb      *enforce.Sandbox
	written []mapEntry
}

type mapEntry struct {
	m   *ebpf.Map
	key any
}

// Rules is what WriteRules wrote for one sandbox; DeleteRules removes
// exactly that.
type Rules struct{ s *lsmSandboxState }

// Adopted is a sandbox found live in the pins at OpenLSM: ID, Name,
// CgroupID, CgroupPath and Mode set, Policy nil, with the rule entries
// found under its policy id.
type Adopted struct {
	Sandbox enforce.Sandbox
	Rules   *Rules
}

// OpenLSM loads the LSM object and attaches its programs. They allow
// everything until Enter puts a sandbox in the table. On error nothing
// stays attached (pinned links stay: they belong to running sandboxes).
func OpenLSM(opts LSMOptions) (_ *LSM, err error) {
	if err := removeMemlock(); err != nil {
		return nil, fmt.Errorf("load LSM programs: %w", err)
	}
	l := &LSM{execDirs: opts.ExecDirs}
	if l.execDirs == nil {
		l.execDirs = resolve.DefaultExecDirs(os.Getenv("PATH"))
	}
	spec, err := loadLsm()
	if err != nil {
		return nil, fmt.Errorf("load LSM programs: %w", err)
	}
	if l.noCache, err = setRenameLock(spec, lookupRenameLock); err != nil {
		return nil, fmt.Errorf("load LSM programs: %w", err)
	}
	l.stubbed = stubAbsentHooks(spec, kernelHasFunc)
	l.userns = !slices.Contains(l.stubbed, usernsHook)
	if l.copies = keepCopyHook(spec); !l.copies {
		l.stubbed = append(l.stubbed, copyPrograms...)
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
	for _, name := range lsmProgramOrder() {
		if slices.Contains(l.stubbed, name) {
			continue
		}
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

// lookupRenameLock finds the address of the dcache's rename seqlock, which
// the verdict cache (bpf/include/verdict.h) needs; tests replace it.
var lookupRenameLock = func() (uint64, error) {
	return kallsyms.Lookup(kallsyms.Path, "rename_lock")
}

// setRenameLock gives the programs of spec rename_lock's address from
// lookup. Where lookup fails (/proc/kallsyms unreadable, its addresses
// zeroed by kptr_restrict, rename_lock not listed) the programs load all
// the same, with the verdict cache off: every open is checked in full.
// noCache says why it is off; err is for a spec without the variable.
func setRenameLock(spec *ebpf.CollectionSpec, lookup func() (uint64, error)) (noCache, err error) {
	v := spec.Variables[lsmVarRenameLockAddr]
	if v == nil {
		return nil, fmt.Errorf("the LSM object has no %s", lsmVarRenameLockAddr)
	}
	addr, noCache := lookup()
	if noCache != nil {
		addr = 0
		noCache = fmt.Errorf("the verdict cache is off, every open is checked in full: %w", noCache)
	}
	if err := v.Set(addr); err != nil {
		return nil, fmt.Errorf("set %s: %w", lsmVarRenameLockAddr, err)
	}
	return noCache, nil
}

// VerdictCache returns nil when file_open caches its allowed verdicts, and
// otherwise why it does not (the programs then check every open in full).
func (l *LSM) VerdictCache() error { return l.noCache }

// Objects are the loaded programs and maps.
func (l *LSM) Objects() *LSMObjects { return &l.objs }

// Links are the program links in lsmProgramOrder (ProgramOrder).
func (l *LSM) Links() []link.Link { return l.links }

// ProgramOrder names the programs in attach order; Programs maps the
// names to the programs.
func ProgramOrder() []string { return lsmProgramOrder() }

// Programs maps the names of ProgramOrder to the loaded programs.
func (l *LSM) Programs() map[string]*ebpf.Program { return l.objs.programs() }

// SharedMaps returns the maps the network object shares (see SharedMaps).
func (l *LSM) SharedMaps() SharedMaps {
	return SharedMaps{
		Sandboxes:     l.objs.Sandboxes,
		SandboxLevels: l.objs.SandboxLevels,
		Events:        l.objs.Events,
		Counters:      l.objs.Counters,
	}
}

// Events delivers the ring buffer's records, of the objects sharing it
// too, decoded as the kernel reported them, until Release.
func (l *LSM) Events() <-chan events.Event { return l.stream.Events() }

// Flush implements enforce.Flusher for Events.
func (l *LSM) Flush(ctx context.Context) (uint64, error) { return l.stream.flush(ctx) }

// Stats sums the per-CPU counters (of every object sharing them).
func (l *LSM) Stats() (enforce.Stats, error) {
	return readCounters(l.objs.Counters)
}

// CheckPolicyID says whether id can name a sandbox's rule sets: rule_set()
// shifts the id left by setAccessBits and AIGATE_SET_EXCEPT takes bit 31.
func CheckPolicyID(id uint32) error {
	if id == 0 || id >= 1<<(31-setAccessBits) {
		return fmt.Errorf("policy id %d outside 1..2^%d-1", id, 31-setAccessBits)
	}
	return nil
}

// WriteRules writes sb's file, exec and unix-socket rules under its policy
// id. On error what was written is deleted again.
func (l *LSM) WriteRules(sb *enforce.Sandbox) (*Rules, error) {
	s := &lsmSandboxState{sb: sb}
	if err := l.writeRules(s); err != nil {
		l.deleteRules(s)
		return nil, err
	}
	if err := l.newRulesGen(); err != nil {
		l.deleteRules(s)
		return nil, err
	}
	return &Rules{s}, nil
}

// Verdict bits of CachedVerdict: the rule sets file_open found nothing in.
const (
	VerdictRead  = uint32(kernelAigateVerdictOkAIGATE_VERDICT_READ)
	VerdictWrite = uint32(kernelAigateVerdictOkAIGATE_VERDICT_WRITE)
)

// CachedVerdict returns the verdict file_open last cached for f's inode
// (bpf/include/verdict.h): VerdictRead, VerdictWrite or both; 0 when none
// is stored. Whether it still holds depends on what it was decided under.
func (l *LSM) CachedVerdict(f *os.File) (uint32, error) {
	var v lsmVerdict
	err := l.objs.Verdicts.Lookup(int32(f.Fd()), &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cached verdict of %s: %w", f.Name(), err)
	}
	return v.Ok, nil
}

// DeleteRules deletes what WriteRules wrote (or adoption found).
func (l *LSM) DeleteRules(r *Rules) error { return l.deleteRules(r.s) }

// Enter records sb in the pins (when pinned: adoption needs it) and then
// enters its cgroup, at level, into the sandbox table: from then on every
// program acts on it. Its rules must be written first.
func (l *LSM) Enter(sb *enforce.Sandbox, level int, audit bool) error {
	if l.pins != nil {
		if err := l.pins.recordSandbox(sb, level); err != nil {
			return err
		}
	}
	var flags uint32
	if audit {
		flags |= sandboxAudit
	}
	if sb.Policy.Userns {
		flags |= sandboxUserns
	}
	if err := l.table.add(sb.CgroupID, level, sb.ID, flags); err != nil {
		if l.pins != nil {
			l.pins.forgetSandbox(sb.ID)
		}
		return err
	}
	return nil
}

// Leave takes the cgroup out of the sandbox table: every program stops
// acting on it at once.
func (l *LSM) Leave(cgroupID uint64) error { return l.table.remove(cgroupID) }

// Forget drops policy id's record from the pins (nothing when unpinned).
func (l *LSM) Forget(id uint32) error {
	if l.pins == nil {
		return nil
	}
	return l.pins.forgetSandbox(id)
}

// PinInfo is the pins' sandbox_info map (lsm_pin.go), nil when unpinned.
func (l *LSM) PinInfo() *ebpf.Map {
	if l.pins == nil {
		return nil
	}
	return l.pins.info
}

// Found lists the sandboxes adoption found live in the pins at OpenLSM.
func (l *LSM) Found() []Adopted { return l.found }

// PinDir is LSMOptions.PinPath: where the pins are, "" when not pinned.
func (l *LSM) PinDir() string {
	if l.pins == nil {
		return ""
	}
	return l.pins.dir
}

// Unpin removes every pin, and the directory when nothing else is in it.
func (l *LSM) Unpin() error {
	if l.pins == nil {
		return nil
	}
	if err := l.unpinAll(); err != nil {
		return fmt.Errorf("remove LSM pins: %w", err)
	}
	return nil
}

// Release closes every file descriptor and stops the event stream. The
// pins, if any, stay: the programs stay attached without this process.
// Only the first call does anything.
func (l *LSM) Release() error {
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
