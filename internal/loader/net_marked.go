//go:build linux

package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// dropMarked deletes the entries of m that mine picks, the ones of one
// owner (a policy, a sandbox cgroup), if marks holds the owner's key: the
// programs mark an owner in marks before they put its first entry in m
// (addr_use_policies, unix_bound_cgroups). Finding those entries means
// walking m, and the kernel visits every bucket of a hash map for that,
// however few entries it holds: an owner that never had an entry (most
// sandboxes connect to nothing and bind nothing) is now one lookup. The
// mark goes before the walk, so that an entry the programs add behind the
// walk marks its owner again rather than staying unmarked. It returns the
// keys it deleted.
func dropMarked[K, V any](marks *ebpf.Map, owner any, m *ebpf.Map, mine func(*K) bool) ([]K, error) {
	var mark uint8
	err := marks.LookupAndDelete(owner, &mark)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, nil
	}
	var errs []error
	if err != nil {
		// Kernels before 5.14 cannot take a hash entry in one call: look
		// and delete. Any other failure walks all the same (the mark may
		// be there).
		if err := marks.Lookup(owner, &mark); errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, nil
		}
		if err := marks.Delete(owner); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("take mark: %w", err))
		}
	}
	keys, err := keysOf[K, V](m, mine)
	if err != nil {
		errs = append(errs, fmt.Errorf("list entries: %w", err))
	}
	errs = append(errs, deleteKeys(m, keys))
	return keys, errors.Join(errs...)
}

// walkBatch is how many entries keysOf reads per system call.
const walkBatch = 256

// keysOf lists the keys of m that mine picks, walkBatch entries per system
// call (an entry at a time there would be one call per entry of every
// sandbox); entry by entry where the kernel refuses the batch (ENOSPC: a
// bucket of more than walkBatch entries).
func keysOf[K, V any](m *ebpf.Map, mine func(*K) bool) ([]K, error) {
	var (
		cursor ebpf.MapBatchCursor
		keys   = make([]K, walkBatch)
		vals   = make([]V, walkBatch)
		out    []K
	)
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range keys[:n] {
			if mine(&keys[i]) {
				out = append(out, keys[i])
			}
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return out, nil
		case errors.Is(err, unix.ENOSPC) || errors.Is(err, ebpf.ErrNotSupported):
			return keysOneByOne[K, V](m, mine)
		case err != nil:
			return out, err
		}
	}
}

func keysOneByOne[K, V any](m *ebpf.Map, mine func(*K) bool) ([]K, error) {
	var (
		k   K
		v   V
		out []K
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if mine(&k) {
			out = append(out, k)
		}
	}
	return out, it.Err()
}

// deleteKeys deletes keys from m in one system call, or one by one from the
// first the batch did not delete (the kernel stops a batch at a key that is
// gone).
func deleteKeys[K any](m *ebpf.Map, keys []K) error {
	if len(keys) == 0 {
		return nil
	}
	n, err := m.BatchDelete(keys, nil)
	if err == nil {
		return nil
	}
	var errs []error
	for _, k := range keys[n:] {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete entry: %w", err))
		}
	}
	return errors.Join(errs...)
}
