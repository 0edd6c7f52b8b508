//go:build linux

package loader

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
)

// Pinned state of the LSM object, under LSMOptions.PinPath:
//
//	layout        array map, one u64: the map layout hash (layoutHash)
//	sandbox_info  hash map: policy id -> pinnedSandbox, what the kernel
//	              maps do not say about a sandbox (level, cgroup path, name)
//	<map name>    every map of lsm.c except the per-CPU scratch buffer
//	link_<prog>   the LSM link of each program
//
// A pinned link keeps its program attached after every file descriptor is
// closed, so enforcement goes on while no agent runs. The policy of a
// sandbox is not pinned: the rule maps are enough to enforce it and to
// remove it; the agent keeps the policy sources and hands the recompiled
// policy back with Claim (the agent names events from its own copy).
const (
	// layoutVersion changes when the meaning of a map changes without its
	// shape (key encodings, flag bits): old pins must then not be adopted.
	layoutVersion = 2 // 2: rule sets are policy<<3 | access (ancestors)

	pinLayout     = "layout"
	pinInfo       = "sandbox_info"
	pinLinkPrefix = "link_"

	pinnedNameLen = 64
	pinnedPathLen = 512
)

// ErrPinLayout is returned by OpenLSM when the pin directory holds state of
// another map layout (an older or newer aigate). Its maps cannot be shared
// with this build's programs, and mixing them would enforce garbage.
var ErrPinLayout = errors.New("pinned BPF state has a different map layout")

// pinnedSandbox is the value of the sandbox_info map.
type pinnedSandbox struct {
	CgroupID uint64
	Level    uint32
	_        uint32
	Name     [pinnedNameLen]byte
	Path     [pinnedPathLen]byte
}

// lsmPins is the pinned state of an LSM opened with a PinPath.
type lsmPins struct {
	dir    string
	layout *ebpf.Map
	info   *ebpf.Map
}

// programs are the LSM programs by link name: the generated program name
// (bpf/lsm.c) without "aigate_". Pins and lsmProgramOrder use these names.
func (o *lsmObjects) programs() map[string]*ebpf.Program {
	return programsByName(&o.lsmPrograms)
}

// layoutHash identifies the shape of every map the programs use, so that a
// pin directory written by another build with other maps is recognised.
func layoutHash(spec *ebpf.CollectionSpec) uint64 {
	names := make([]string, 0, len(spec.Maps))
	for n := range spec.Maps {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	fmt.Fprintf(h, "aigate-lsm-layout %d\n", layoutVersion)
	fmt.Fprintf(h, "%s %d\n", pinInfo, binary.Size(pinnedSandbox{}))
	for _, n := range names {
		if !pinnedMap(n) {
			continue // private to each load
		}
		m := spec.Maps[n]
		fmt.Fprintf(h, "%s %d %d %d %d %d\n", n, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags)
	}
	return binary.LittleEndian.Uint64(h.Sum(nil))
}

// pinnedMap tells the maps of lsm.c that are pinned. The scratch buffer is
// not (each load may have its own), nor the sections of globals (.bss),
// which the kernel marks frozen/read-only per program load.
func pinnedMap(name string) bool { return name != "scratch_map" && !strings.HasPrefix(name, ".") }

// openPins checks or creates the layout stamp in dir and marks the maps of
// spec for pinning there. It refuses a directory of another layout.
func openPins(dir string, spec *ebpf.CollectionSpec) (_ *lsmPins, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pin directory: %w", err)
	}
	want := layoutHash(spec)
	p := &lsmPins{dir: dir}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	p.layout, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinLayout), nil)
	switch {
	case err == nil:
		var got uint64
		if err := p.layout.Lookup(uint32(0), &got); err != nil {
			return nil, fmt.Errorf("read pinned layout: %w", err)
		}
		if got != want {
			return nil, fmt.Errorf("%w: %s was written by another aigate version (layout %016x, this one %016x); end the running sandboxes and run `sudo aigate reset --force`", ErrPinLayout, dir, got, want)
		}
	case errors.Is(err, os.ErrNotExist):
		for n := range spec.Maps {
			if _, err := os.Lstat(filepath.Join(dir, n)); err == nil && pinnedMap(n) {
				return nil, fmt.Errorf("%w: %s holds map %s but no layout stamp; run `sudo aigate reset --force`", ErrPinLayout, dir, n)
			}
		}
		p.layout, err = ebpf.NewMap(&ebpf.MapSpec{Name: "aigate_layout", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
		if err != nil {
			return nil, fmt.Errorf("create layout map: %w", err)
		}
		if err := p.layout.Update(uint32(0), want, ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("write layout map: %w", err)
		}
		if err := p.layout.Pin(filepath.Join(dir, pinLayout)); err != nil {
			return nil, fmt.Errorf("pin layout map: %w", err)
		}
	default:
		return nil, fmt.Errorf("open pinned layout: %w", err)
	}

	p.info, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinInfo), nil)
	if errors.Is(err, os.ErrNotExist) {
		p.info, err = ebpf.NewMap(&ebpf.MapSpec{
			Name: "aigate_sb_info", Type: ebpf.Hash, KeySize: 4,
			ValueSize: uint32(binary.Size(pinnedSandbox{})), MaxEntries: 4096,
			Flags: 1, // BPF_F_NO_PREALLOC
		})
		if err == nil {
			err = p.info.Pin(filepath.Join(dir, pinInfo))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open sandbox info map: %w", err)
	}
	for n, m := range spec.Maps {
		if pinnedMap(n) {
			m.Pinning = ebpf.PinByName
		}
	}
	return p, nil
}

func (p *lsmPins) close() {
	if p.layout != nil {
		p.layout.Close()
	}
	if p.info != nil {
		p.info.Close()
	}
}

// attachPinned attaches prog unless dir holds a link of the same program
// (same tag) already, which it then reuses: a restarted agent must not
// attach twice. A pinned link of another program (an upgrade that kept the
// map layout) is replaced after the new one is attached, so enforcement
// never pauses.
func attachPinned(dir, name string, prog *ebpf.Program) (link.Link, error) {
	path := filepath.Join(dir, pinLinkPrefix+name)
	old, err := link.LoadPinnedLink(path, nil)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open pinned link %s: %w", path, err)
	}
	if old != nil {
		same, err := sameProgram(old, prog)
		if err != nil {
			old.Close()
			return nil, err
		}
		if same {
			return old, nil
		}
	}
	l, err := link.AttachLSM(link.LSMOptions{Program: prog})
	if err != nil {
		if old != nil {
			old.Close()
		}
		return nil, fmt.Errorf("attach LSM program %s: %w", name, err)
	}
	if old == nil {
		if err := l.Pin(path); err != nil {
			l.Close()
			return nil, fmt.Errorf("pin link %s: %w", path, err)
		}
		return l, nil
	}
	// Replace the old pin atomically: bpffs renames over an existing name.
	tmp := path + ".new"
	if err := l.Pin(tmp); err != nil {
		l.Close()
		old.Close()
		return nil, fmt.Errorf("pin link %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = l.Unpin()
		l.Close()
		old.Close()
		return nil, fmt.Errorf("replace pinned link %s: %w", path, err)
	}
	old.Close() // its pin is gone: this detaches the old program
	return l, nil
}

func sameProgram(l link.Link, prog *ebpf.Program) (bool, error) {
	li, err := l.Info()
	if err != nil {
		return false, fmt.Errorf("read pinned link: %w", err)
	}
	old, err := ebpf.NewProgramFromID(li.Program)
	if err != nil {
		return false, fmt.Errorf("open pinned program: %w", err)
	}
	defer old.Close()
	oi, err := old.Info()
	if err != nil {
		return false, fmt.Errorf("read pinned program: %w", err)
	}
	ni, err := prog.Info()
	if err != nil {
		return false, fmt.Errorf("read program: %w", err)
	}
	return oi.Tag == ni.Tag && oi.Tag != "", nil
}

// recordSandbox stores what adoption needs about sb before it goes live.
func (p *lsmPins) recordSandbox(sb *enforce.Sandbox, level int) error {
	var v pinnedSandbox
	v.CgroupID = sb.CgroupID
	v.Level = uint32(level)
	copy(v.Name[:len(v.Name)-1], sb.Name)
	if len(sb.CgroupPath) >= len(v.Path) {
		return fmt.Errorf("cgroup path %s is longer than %d bytes", sb.CgroupPath, len(v.Path)-1)
	}
	copy(v.Path[:], sb.CgroupPath)
	if err := p.info.Update(sb.ID, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("record sandbox in %s: %w", pinInfo, err)
	}
	return nil
}

func (p *lsmPins) forgetSandbox(id uint32) error {
	if err := p.info.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete sandbox from %s: %w", pinInfo, err)
	}
	return nil
}

// adopt rebuilds the in-memory state from the pinned maps: every sandbox
// recorded in sandbox_info whose cgroup still exists with the same id is
// taken over with the rule entries found under its policy id; a record
// whose cgroup is gone (its processes ended while no agent ran) or that
// never reached the sandbox table (a crash inside Add) is cleaned up.
func (l *LSM) adopt() error {
	p := l.pins
	written := map[uint32][]mapEntry{}
	if err := l.collectRules(written); err != nil {
		return err
	}

	var (
		id   uint32
		v    pinnedSandbox
		errs []error
	)
	type rec struct {
		id uint32
		v  pinnedSandbox
	}
	var recs []rec
	it := p.info.Iterate()
	for it.Next(&id, &v) {
		recs = append(recs, rec{id, v})
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", pinInfo, err)
	}
	for _, r := range recs {
		s := &lsmSandboxState{written: written[r.id]}
		delete(written, r.id)
		sb := &enforce.Sandbox{
			ID:         r.id,
			Name:       cBytes(r.v.Name[:]),
			CgroupID:   r.v.CgroupID,
			CgroupPath: cBytes(r.v.Path[:]),
		}
		s.sb = sb
		var entry kernelSandbox
		live := l.objs.Sandboxes.Lookup(sb.CgroupID, &entry) == nil && entry.PolicyId == r.id
		if live {
			g, err := cgroup.Open(sb.CgroupPath)
			live = err == nil && g.ID == sb.CgroupID
		}
		if !live {
			// Stale: remove whatever is left of it.
			if entry.PolicyId == r.id {
				_ = l.objs.Sandboxes.Delete(sb.CgroupID)
			}
			if err := l.deleteRules(s); err != nil {
				errs = append(errs, err)
			}
			if err := p.forgetSandbox(r.id); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		sb.Mode = policy.ModeEnforce
		if entry.Flags&sandboxAudit != 0 {
			sb.Mode = policy.ModeAudit
		}
		l.table.seed(sb.CgroupID, int(r.v.Level))
		l.found = append(l.found, Adopted{Sandbox: *sb, Rules: &Rules{s}})
	}
	// Rules of no recorded sandbox: a crash between writing them and
	// recording the sandbox.
	for _, w := range written {
		if err := l.deleteRules(&lsmSandboxState{written: w}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.table.writeLevels(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("adopt pinned sandboxes: %w", err)
	}
	return nil
}

// collectRules groups every rule map entry by the policy id of its set.
func (l *LSM) collectRules(out map[uint32][]mapEntry) error {
	var errs []error
	var (
		pk lsmPathKey
		nk lsmNameKey
		ik lsmInodeKey
		sk uint32
		v  uint32
	)
	collect := func(m *ebpf.Map, key any, set func() uint32, clone func() any) {
		it := m.Iterate()
		for it.Next(key, &v) {
			id := (set() &^ setExcept) >> setAccessBits // an exception key belongs to its set
			out[id] = append(out[id], mapEntry{m, clone()})
		}
		if err := it.Err(); err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", m, err))
		}
	}
	for _, m := range []*ebpf.Map{l.objs.PathRules} {
		collect(m, &pk, func() uint32 { return pk.Set }, func() any { return pk })
	}
	for _, m := range []*ebpf.Map{l.objs.NameRules, l.objs.PrefixRules, l.objs.SuffixRules} {
		collect(m, &nk, func() uint32 { return nk.Set }, func() any { return nk })
	}
	collect(l.objs.InodeRules, &ik, func() uint32 { return ik.Set }, func() any { return ik })
	var (
		szk lsmExecSizeKey
		smk lsmExecSumKey
	)
	// Sums before sizes, as writeCopies writes them.
	collect(l.objs.ExecSums, &smk, func() uint32 { return smk.Set }, func() any { return smk })
	collect(l.objs.ExecSizes, &szk, func() uint32 { return szk.Set }, func() any { return szk })
	// set_flags last in each list: deleteRules walks backwards, so the
	// flags go first, as for a sandbox added by this process.
	collect(l.objs.SetFlags, &sk, func() uint32 { return sk }, func() any { return sk })
	for id, w := range out {
		sort.SliceStable(w, func(i, j int) bool {
			return w[i].m != l.objs.SetFlags && w[j].m == l.objs.SetFlags
		})
		out[id] = w
	}
	return errors.Join(errs...)
}

// seed enters a sandbox that is already in the kernel's table (adopted
// from pins) into the in-memory bookkeeping, without writing the maps.
func (t *sandboxTable) seed(cgroupID uint64, level int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byCgroup[cgroupID]; ok {
		return
	}
	t.byCgroup[cgroupID] = level
	t.perLevel[level]++
}

func cBytes(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// unpinAll removes every pin of the LSM object, and the directory when
// nothing else (the network object's pins) is left in it.
func (l *LSM) unpinAll() error {
	var errs []error
	// By name: a link that replaced an older one (attachPinned) does not
	// know its final pin path.
	for name := range l.objs.programs() {
		path := filepath.Join(l.pins.dir, pinLinkPrefix+name)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin link: %w", err))
		}
	}
	// Every map of the object (a list written out here missed pty_made
	// when it was added, and a clean stop left its pin), then the two of
	// the pins themselves.
	ms := slices.Collect(maps.Values(mapsByName(&l.objs.lsmMaps)))
	for _, m := range append(ms, l.pins.info, l.pins.layout) {
		if m == nil || !m.IsPinned() {
			continue
		}
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", m, err))
		}
	}
	if err := os.Remove(l.pins.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		// Not empty: another object's pins are still there; they own them.
		var pe *os.PathError
		if !errors.As(err, &pe) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
