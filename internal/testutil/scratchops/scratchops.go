//go:build linux

// Package scratchops holds the scratch buffers of a BPF object
// (bpf/include/scratch.h) from user space, for the scratch-buffer tests of
// the loader (sockunix.c) and lsm (lsm.c): a preemption inside a BPF
// program cannot be arranged, so the tests write the owners instead.
package scratchops

import (
	"testing"

	"github.com/cilium/ebpf"
)

// Stranger is the owner the tests write: a pid_tgid no task here has.
const Stranger = 0x7fff_0000_7fff

// Buffers is a per-CPU scratch map whose values V start with their owner.
type Buffers[V any] struct {
	Map *ebpf.Map
	// Owner returns the owner field of a value (its first word).
	Owner func(*V) *uint64
}

// Slots is the number of buffers per CPU: the map's entries
// (AIGATE_SCRATCH_SLOTS).
func (b Buffers[V]) Slots() int { return int(b.Map.MaxEntries()) }

// Set writes owner into the first n buffers of every CPU, as if that many
// programs were preempted while holding them.
func (b Buffers[V]) Set(t testing.TB, n int, owner uint64) {
	t.Helper()
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for slot := uint32(0); slot < uint32(n); slot++ {
		vals := make([]V, cpus)
		for i := range vals {
			*b.Owner(&vals[i]) = owner
		}
		if err := b.Map.Update(slot, vals, ebpf.UpdateExist); err != nil {
			t.Fatalf("scratch slot %d: %v", slot, err)
		}
	}
}

// Check fails t unless the first held buffers of every CPU are owned by
// holder and the others are free.
func (b Buffers[V]) Check(t testing.TB, what string, held int, holder uint64) {
	t.Helper()
	for slot := uint32(0); slot < uint32(b.Slots()); slot++ {
		var vals []V
		if err := b.Map.Lookup(slot, &vals); err != nil {
			t.Fatalf("scratch slot %d: %v", slot, err)
		}
		want := uint64(0)
		if int(slot) < held {
			want = holder
		}
		for cpu := range vals {
			if o := *b.Owner(&vals[cpu]); o != want {
				t.Errorf("%s: scratch slot %d of CPU %d: owner %#x, want %#x", what, slot, cpu, o, want)
			}
		}
	}
}
