//go:build linux

package loader

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// KeptRoot is the bpffs directory where an embedded run (`sudo aigate run`
// with no agent) keeps the standalone network object loaded between runs
// (NetOptions.Keep): verifying its programs is most of such a run's
// start-up, and the kernel does it again for every process that loads
// them. `aigate reset --force` removes it. Tests change it.
var KeptRoot = "/sys/fs/bpf/aigate-kept"

// keptSet is one set of kept objects: the network object and its unix and
// receive parts, pinned under KeptRoot/net-<hash>, where the hash is of
// every object's bytes (their programs and their map layout), so a set is
// only ever adopted by a binary built from the same objects. The set's
// directory is locked (flock) for as long as one Net uses it: a second run
// at the same time (another mount namespace, another agent socket) loads
// its own objects.
type keptSet struct {
	dir  string
	lock *os.File

	adopting bool                // try the pins before loading
	ids      map[ebpf.MapID]bool // the maps of the set, as adopted
	adopted  []any               // the objects structs filled from pins
	broken   error               // a part could not be pinned: the set is cleared at open's end
	notFound error               // why the first part not adopted was not
	tags     *ebpf.Map           // the kernel's tag of each program pinned, by part/name
}

// keptParts names the parts of a set and the directory of each below it.
const (
	keptNet     = "net"
	keptUnix    = "unix"
	keptRecv    = "recv"
	keptExitRec = "exitrec"
)

// keptHash is the hash in a set's name: every object a Net loads.
func keptHash() string {
	h := sha256.New()
	for _, b := range [][]byte{[]byte("aigate-kept-v1\x00"), _NetBytes, _NetUnixBytes, _NetRecvBytes, _ExitRecBytes} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// openKeptSet makes (or finds) and locks this binary's set. Every
// directory on the way must be root's and closed to others: a directory
// anyone could have made is never trusted. errKeptBusy means another Net
// holds the set.
func openKeptSet() (*keptSet, error) {
	if err := keptDir(KeptRoot); err != nil {
		return nil, err
	}
	dir := filepath.Join(KeptRoot, "net-"+keptHash())
	if err := keptDir(dir); err != nil {
		return nil, err
	}
	f, err := openDirNoFollow(dir)
	if err != nil {
		return nil, fmt.Errorf("open kept programs: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errKeptBusy
		}
		return nil, fmt.Errorf("lock kept programs %s: %w", dir, err)
	}
	// Checked again under the lock: the directory locked is the one checked.
	if err := keptOwned(f); err != nil {
		f.Close()
		return nil, err
	}
	removeOtherSets(dir)
	return &keptSet{dir: dir, lock: f}, nil
}

// removeOtherSets unpins the sets of other builds that no process uses
// (their lock is free). Nothing they enforce goes with the pins: a
// killed run's sandbox is held by its links, which hold the programs and
// maps; only the next adoption, which never comes, would have used them.
func removeOtherSets(mine string) {
	ents, err := os.ReadDir(KeptRoot)
	if err != nil {
		return
	}
	for _, e := range ents {
		dir := filepath.Join(KeptRoot, e.Name())
		if dir == mine || !e.IsDir() {
			continue
		}
		f, err := openDirNoFollow(dir)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			_ = os.RemoveAll(dir)
		}
		f.Close()
	}
}

var errKeptBusy = errors.New("another run uses the kept network programs")

// openDirNoFollow opens a directory that is not a symbolic link: bpffs
// has them, and /sys/fs/bpf is writable by everyone.
func openDirNoFollow(dir string) (*os.File, error) {
	return os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// keptDir makes dir (0700) unless it exists, and checks it.
func keptDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("keep network programs in %s: %w", dir, err)
	}
	f, err := openDirNoFollow(dir)
	if err != nil {
		return fmt.Errorf("keep network programs in %s: %w", dir, err)
	}
	defer f.Close()
	return keptOwned(f)
}

// keptOwned refuses a directory that is not root's, or that its group or
// others may write or enter, or that is not on a BPF filesystem.
func keptOwned(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("keep network programs in %s: %w", f.Name(), err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
		return fmt.Errorf("keep network programs in %s: %w", f.Name(), err)
	}
	switch {
	case fs.Type != unix.BPF_FS_MAGIC:
		return fmt.Errorf("keep network programs in %s: not a BPF filesystem", f.Name())
	case st.Mode&syscall.S_IFMT != syscall.S_IFDIR:
		return fmt.Errorf("keep network programs in %s: not a directory", f.Name())
	case st.Uid != 0:
		return fmt.Errorf("keep network programs in %s: owned by uid %d, not root (remove it: sudo aigate reset --force)", f.Name(), st.Uid)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("keep network programs in %s: mode %o lets others in (remove it: sudo aigate reset --force)", f.Name(), st.Mode&0o777)
	}
	return nil
}

func (k *keptSet) close() error {
	if k == nil || k.lock == nil {
		return nil
	}
	err := k.lock.Close() // releases the lock
	k.lock = nil
	if k.tags != nil {
		err = errors.Join(err, k.tags.Close())
		k.tags = nil
	}
	return err
}

// load fills objs (a bpf2go objects struct) with part's pinned objects
// when they are exactly spec's, else loads spec afresh with copts and, on
// a set (k not nil), pins the result for the next run. A nil k loads.
func (k *keptSet) load(part string, spec *ebpf.CollectionSpec, objs any, copts *ebpf.CollectionOptions) (adopted bool, err error) {
	if k != nil && k.adopting {
		aerr := k.adopt(part, spec, objs, copts.MapReplacements)
		if aerr == nil {
			k.adopted = append(k.adopted, objs)
			return true, nil
		}
		if k.notFound == nil {
			k.notFound = aerr
		}
		closeObjectFields(objs)
	}
	if err := spec.LoadAndAssign(objs, copts); err != nil {
		return false, err
	}
	if k != nil && k.broken == nil {
		k.broken = k.pin(part, objs)
	}
	return false, nil
}

// adopt fills objs (a bpf2go objects struct) with the maps and programs
// pinned in part, after checking that each is what spec would load: a map
// of the same type and sizes, a program of the same type and name that
// uses only maps of this set. Anything missing or different is an error:
// the caller loads afresh.
func (k *keptSet) adopt(part string, spec *ebpf.CollectionSpec, objs any, shared map[string]*ebpf.Map) error {
	dir := filepath.Join(k.dir, part)
	if k.ids == nil {
		k.ids = map[ebpf.MapID]bool{}
	}
	setMapIDs := k.ids
	return eachObject(objs, func(name string, v reflect.Value) error {
		path := filepath.Join(dir, name)
		switch v.Type() {
		case reflect.TypeOf((*ebpf.Map)(nil)):
			ms := spec.Maps[name]
			if ms == nil {
				return fmt.Errorf("kept map %s: not in the object", name)
			}
			m, err := ebpf.LoadPinnedMap(path, nil)
			if err != nil {
				return fmt.Errorf("kept map %s: %w", name, err)
			}
			if err := keptMap(m, ms); err != nil {
				m.Close()
				return fmt.Errorf("kept map %s: %w", name, err)
			}
			info, err := m.Info()
			if err != nil {
				m.Close()
				return fmt.Errorf("kept map %s: %w", name, err)
			}
			id, _ := info.ID()
			if r := shared[name]; r != nil {
				// A map this part shares (the network object's sandbox
				// table, ring buffer, counters) must be that very map.
				if rid, err := mapID(r); err != nil || rid != id {
					m.Close()
					return fmt.Errorf("kept map %s: not the map it shares", name)
				}
			}
			setMapIDs[id] = true
			v.Set(reflect.ValueOf(m))
		case reflect.TypeOf((*ebpf.Program)(nil)):
			ps := spec.Programs[name]
			if ps == nil {
				return fmt.Errorf("kept program %s: not in the object", name)
			}
			p, err := ebpf.LoadPinnedProgram(path, nil)
			if err != nil {
				return fmt.Errorf("kept program %s: %w", name, err)
			}
			if err := keptProgram(p, ps, setMapIDs); err != nil {
				p.Close()
				return fmt.Errorf("kept program %s: %w", name, err)
			}
			if err := k.sameTag(part, name, p); err != nil {
				p.Close()
				return fmt.Errorf("kept program %s: %w", name, err)
			}
			v.Set(reflect.ValueOf(p))
		}
		return nil
	})
}

func mapID(m *ebpf.Map) (ebpf.MapID, error) {
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}

// keptMap checks what the kernel says of a pinned map against its spec.
func keptMap(m *ebpf.Map, ms *ebpf.MapSpec) error {
	switch {
	case m.Type() != ms.Type:
		return fmt.Errorf("type %s, want %s", m.Type(), ms.Type)
	case m.KeySize() != ms.KeySize || m.ValueSize() != ms.ValueSize:
		return fmt.Errorf("key/value size %d/%d, want %d/%d", m.KeySize(), m.ValueSize(), ms.KeySize, ms.ValueSize)
	case m.MaxEntries() != ms.MaxEntries:
		return fmt.Errorf("%d entries, want %d", m.MaxEntries(), ms.MaxEntries)
	case m.Flags() != ms.Flags:
		return fmt.Errorf("flags %#x, want %#x", m.Flags(), ms.Flags)
	}
	return nil
}

// keptProgram checks a pinned program's type and name against its spec,
// and that every map it uses is one of the set's (maps loaded before the
// programs: eachObject visits the maps of a part first).
func keptProgram(p *ebpf.Program, ps *ebpf.ProgramSpec, setMapIDs map[ebpf.MapID]bool) error {
	if p.Type() != ps.Type {
		return fmt.Errorf("type %s, want %s", p.Type(), ps.Type)
	}
	info, err := p.Info()
	if err != nil {
		return err
	}
	// The kernel keeps 15 bytes of the name; cilium/ebpf gives the whole
	// one when the program carries BTF.
	if info.Name != ps.Name && info.Name != truncName(ps.Name) {
		return fmt.Errorf("name %q, want %q", info.Name, ps.Name)
	}
	ids, ok := info.MapIDs()
	if !ok {
		return errors.New("the kernel does not say which maps it uses")
	}
	for _, id := range ids {
		if !setMapIDs[id] {
			return fmt.Errorf("uses map %d, which is not one of the kept maps", id)
		}
	}
	return nil
}

// truncName is the name the kernel keeps of a program (BPF_OBJ_NAME_LEN-1).
func truncName(s string) string {
	if len(s) > unix.BPF_OBJ_NAME_LEN-1 {
		return s[:unix.BPF_OBJ_NAME_LEN-1]
	}
	return s
}

// pin pins every map and program of objs in part (made afresh), and
// records each program's tag.
func (k *keptSet) pin(part string, objs any) error {
	dir := filepath.Join(k.dir, part)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("keep network programs: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("keep network programs: %w", err)
	}
	tags, err := k.tagMap(true)
	if err != nil {
		return err
	}
	return eachObject(objs, func(name string, v reflect.Value) error {
		path := filepath.Join(dir, name)
		var err error
		switch o := v.Interface().(type) {
		case *ebpf.Map:
			err = o.Pin(path)
		case *ebpf.Program:
			var tag [8]byte
			if tag, err = programTag(o); err == nil {
				err = tags.Update(tagKey(part, name), tag, ebpf.UpdateAny)
			}
			if err == nil {
				err = o.Pin(path)
			}
		}
		if err != nil {
			return fmt.Errorf("keep network programs: pin %s: %w", name, err)
		}
		return nil
	})
}

// The tags map records the kernel's tag (a hash of the instructions as
// loaded) of every program the set pinned: a program pinned under the
// same name by anything else has another tag, and is not adopted.
const (
	keptTags       = "tags"
	keptTagKeySize = 64
)

// tagMap returns the set's tags map: the pinned one when it has the
// expected layout, else (create) a new one pinned in its place.
func (k *keptSet) tagMap(create bool) (*ebpf.Map, error) {
	if k.tags != nil {
		return k.tags, nil
	}
	path := filepath.Join(k.dir, keptTags)
	spec := &ebpf.MapSpec{Name: "aigate_kept", Type: ebpf.Hash, KeySize: keptTagKeySize, ValueSize: 8, MaxEntries: 64}
	if m, err := ebpf.LoadPinnedMap(path, nil); err == nil {
		if keptMap(m, spec) == nil {
			k.tags = m
			return m, nil
		}
		m.Close()
	}
	if !create {
		return nil, errors.New("no record of the kept programs' tags")
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("keep network programs: %w", err)
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("keep network programs: %w", err)
	}
	if err := m.Pin(path); err != nil {
		m.Close()
		return nil, fmt.Errorf("keep network programs: %w", err)
	}
	k.tags = m
	return m, nil
}

func tagKey(part, name string) [keptTagKeySize]byte {
	var k [keptTagKeySize]byte
	copy(k[:], part+"/"+name)
	return k
}

func programTag(p *ebpf.Program) ([8]byte, error) {
	var tag [8]byte
	info, err := p.Info()
	if err != nil {
		return tag, err
	}
	b, err := hex.DecodeString(info.Tag)
	if err != nil || len(b) != len(tag) {
		return tag, fmt.Errorf("program tag %q", info.Tag)
	}
	copy(tag[:], b)
	return tag, nil
}

// sameTag checks a pinned program's tag against the one recorded when the
// set pinned it.
func (k *keptSet) sameTag(part, name string, p *ebpf.Program) error {
	tags, err := k.tagMap(false)
	if err != nil {
		return err
	}
	var want [8]byte
	if err := tags.Lookup(tagKey(part, name), &want); err != nil {
		return fmt.Errorf("no recorded tag: %w", err)
	}
	got, err := programTag(p)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("tag %x, but the set pinned %x", got, want)
	}
	return nil
}

// clear removes every part's pins, for a set that failed to adopt: the
// next pin starts from nothing.
func (k *keptSet) clear() error {
	ents, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("clear kept network programs: %w", err)
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(k.dir, e.Name())))
	}
	return errors.Join(errs...)
}

// eachObject calls fn on every *ebpf.Map field, then every *ebpf.Program
// field, of a bpf2go objects struct (through its embedded structs), by the
// name in its ebpf tag. Variables are left alone.
func eachObject(objs any, fn func(name string, v reflect.Value) error) error {
	type field struct {
		name string
		v    reflect.Value
	}
	var maps, progs []field
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			f, sf := v.Field(i), v.Type().Field(i)
			switch {
			case sf.Anonymous && f.Kind() == reflect.Struct:
				walk(f)
			case f.Type() == reflect.TypeOf((*ebpf.Map)(nil)):
				maps = append(maps, field{sf.Tag.Get("ebpf"), f})
			case f.Type() == reflect.TypeOf((*ebpf.Program)(nil)):
				progs = append(progs, field{sf.Tag.Get("ebpf"), f})
			}
		}
	}
	walk(reflect.ValueOf(objs).Elem())
	for _, f := range append(maps, progs...) {
		if err := fn(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// closeObjectFields closes whatever adopt filled in before it failed.
func closeObjectFields(objs any) {
	_ = eachObject(objs, func(_ string, v reflect.Value) error {
		if v.IsNil() {
			return nil
		}
		if c, ok := v.Interface().(interface{ Close() error }); ok {
			c.Close()
		}
		v.Set(reflect.Zero(v.Type()))
		return nil
	})
}

// liveSandboxes returns the cgroups of the kept sandbox table that live
// says still exist. A set whose table names one is in use by a run that
// died before its sandbox did: its rules still confine that sandbox, so
// nothing of it may be touched.
func liveSandboxes(sandboxes *ebpf.Map, live func(cgroupID uint64) bool) ([]uint64, error) {
	var out []uint64
	var id uint64
	it := sandboxes.Iterate()
	var sb kernelSandbox
	for it.Next(&id, &sb) {
		if live == nil || live(id) {
			out = append(out, id)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read the kept sandbox table: %w", err)
	}
	return out, nil
}

// scrub empties every map of objs that holds per-sandbox state, so that
// nothing an earlier run wrote is in force for this one: hash and trie
// entries are deleted, array slots zeroed. The ring buffer is drained
// apart (drainEvents), and socket storage goes with its socket.
func scrub(objs any) error {
	var errs []error
	_ = eachObject(objs, func(name string, v reflect.Value) error {
		m, ok := v.Interface().(*ebpf.Map)
		if !ok || m == nil {
			return nil
		}
		if err := scrubMap(m); err != nil {
			errs = append(errs, fmt.Errorf("empty kept map %s: %w", name, err))
		}
		return nil
	})
	return errors.Join(errs...)
}

func scrubMap(m *ebpf.Map) error {
	switch m.Type() {
	case ebpf.RingBuf, ebpf.SkStorage:
		return nil
	case ebpf.Array, ebpf.PerCPUArray:
		zero := make([]byte, m.ValueSize())
		if m.Type() == ebpf.PerCPUArray {
			n, err := ebpf.PossibleCPU()
			if err != nil {
				return err
			}
			return zeroSlots(m, func() any {
				vals := make([][]byte, n)
				for i := range vals {
					vals[i] = zero
				}
				return vals
			})
		}
		return zeroSlots(m, func() any { return zero })
	}
	// Keys are collected first: deleting while iterating restarts the walk.
	var keys [][]byte
	var prev any // nil: the first key
	for {
		key := make([]byte, m.KeySize())
		if err := m.NextKey(prev, &key); errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		} else if err != nil {
			return err
		}
		keys = append(keys, key)
		prev = key
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

func zeroSlots(m *ebpf.Map, zero func() any) error {
	for i := uint32(0); i < m.MaxEntries(); i++ {
		if err := m.Update(i, zero(), ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}

// loadObjects fills n.objs: from the kept set when it holds exactly these
// objects and no live sandbox, else afresh (pinned for the next run when
// n holds a set).
func (n *Net) loadObjects(spec *ebpf.CollectionSpec, copts *ebpf.CollectionOptions, live func(uint64) bool) error {
	if n.kept == nil {
		return spec.LoadAndAssign(&n.objs, copts)
	}
	n.kept.adopting = true
	adopted, err := n.kept.load(keptNet, spec, &n.objs, copts)
	if err != nil || !adopted {
		// Loaded afresh: the other parts are too (a part adopted beside a
		// fresh network object would share none of its maps).
		n.kept.adopting = false
		return err
	}
	inUse, err := liveSandboxes(n.objs.Sandboxes, live)
	if err == nil && len(inUse) > 0 {
		err = fmt.Errorf("the kept network programs still confine sandbox cgroup %d (a killed run's, until it ends)", inUse[0])
	}
	if err != nil {
		// Left exactly as found, for the run whose sandbox it confines.
		n.keptErr = err
		n.objs.Close()
		n.objs = netObjects{}
		n.kept.close()
		n.kept = nil
		return spec.LoadAndAssign(&n.objs, copts)
	}
	n.keptAdopted = true
	return nil
}

// settleKept ends OpenNet's use of the set: what was adopted is emptied
// of every earlier run's state (an error fails the open: stale rules must
// not be in force), and a set that could not be pinned whole is cleared
// and not used.
func (n *Net) settleKept() error {
	k := n.kept
	if k == nil {
		return nil
	}
	var errs []error
	for _, objs := range k.adopted {
		errs = append(errs, scrub(objs))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w (sudo aigate reset --force removes the kept programs)", err)
	}
	if n.keptAdopted {
		// Events an earlier run's sandboxes left unread are not this run's.
		if err := drainEvents(n.objs.Events); err != nil {
			return err
		}
	}
	if k.broken != nil {
		n.keptErr = k.broken
		n.keptAdopted = false
		n.kept = nil
		return errors.Join(k.clear(), k.close())
	}
	return nil
}

// KeptStatus says whether n uses a kept set (NetOptions.Keep): adopted
// is true when its programs were found loaded; otherwise why not: no set
// is used (another run holds it, a directory is not root's...), or this
// Net loaded the programs and pinned them (the first run, or pins that
// were not exactly its objects).
func (n *Net) KeptStatus() (adopted bool, why error) {
	switch {
	case n.kept == nil && n.keptErr == nil:
		return false, errors.New("not asked to keep the network programs")
	case n.kept == nil:
		return false, fmt.Errorf("not kept: %w", n.keptErr)
	case n.keptAdopted:
		return true, nil
	case n.kept.notFound != nil:
		return false, fmt.Errorf("loaded and kept: %w", n.kept.notFound)
	}
	return false, errors.New("loaded and kept")
}

// drainEvents discards what the ring buffer holds.
func drainEvents(m *ebpf.Map) error {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return fmt.Errorf("drain the kept event buffer: %w", err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now())
	for {
		if _, err := rd.Read(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("drain the kept event buffer: %w", err)
		}
	}
}
