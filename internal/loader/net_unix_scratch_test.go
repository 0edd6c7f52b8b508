//go:build linux

package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/aigate-dev/aigate/internal/policy"
)

// scratchSlots is the number of scratch buffers per CPU (scratch.h).
const scratchSlots = int(kernelAigateScratchAIGATE_SCRATCH_SLOTS)

// scratchValue is a scratch buffer of the BPF objects; each starts with
// its owner (scratch.h).
type scratchValue interface {
	netUnixUnixScratchBuf | lsmScratch
}

func ownerOf[V scratchValue](v *V) *uint64 {
	switch p := any(v).(type) {
	case *netUnixUnixScratchBuf:
		return &p.Owner
	case *lsmScratch:
		return &p.Owner
	}
	panic("not a scratch buffer")
}

// setScratchOwners writes owner into the first n scratch buffers of
// every CPU, as if that many programs were preempted while holding them.
func setScratchOwners[V scratchValue](t *testing.T, m *ebpf.Map, n int, owner uint64) {
	t.Helper()
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for slot := uint32(0); slot < uint32(n); slot++ {
		vals := make([]V, cpus)
		for i := range vals {
			*ownerOf(&vals[i]) = owner
		}
		if err := m.Update(slot, vals, ebpf.UpdateExist); err != nil {
			t.Fatalf("scratch slot %d: %v", slot, err)
		}
	}
}

// checkScratchOwners fails t unless the first held scratch buffers of
// every CPU are owned by holder and the others are free.
func checkScratchOwners[V scratchValue](t *testing.T, what string, m *ebpf.Map, held int, holder uint64) {
	t.Helper()
	for slot := uint32(0); slot < uint32(scratchSlots); slot++ {
		var vals []V
		if err := m.Lookup(slot, &vals); err != nil {
			t.Fatalf("scratch slot %d: %v", slot, err)
		}
		want := uint64(0)
		if int(slot) < held {
			want = holder
		}
		for cpu := range vals {
			if o := *ownerOf(&vals[cpu]); o != want {
				t.Errorf("%s: scratch slot %d of CPU %d: owner %#x, want %#x", what, slot, cpu, o, want)
			}
		}
	}
}

// stranger is the owner the tests write: a pid_tgid no task here has.
const stranger = 0x7fff_0000_7fff

// TestNetUnixScratch checks the scratch-buffer discipline of sockunix.c
// (bpf/include/scratch.h). The race it prevents, a program preempted on
// its CPU while another task's program overwrites the keys it is about to
// look up, needs preemption inside a BPF program at a chosen instruction,
// which no test can arrange. What a test can show is the mechanism the
// fix rests on: a program never uses a buffer another task holds (every
// buffer held means refused, with an event naming the socket, and a bind
// that is not learned), it takes the next free buffer when some are held,
// and every run gives its buffer back.
func TestNetUnixScratch(t *testing.T) {
	if !kernelAtLeast(t, 6, 7) {
		// skip-ok: version-dependent; TestNetUnixSockets checks what is reported instead.
		t.Skip("no cgroup connect_unix programs before Linux 6.7 (TestNetUnixSockets checks the report)")
	}
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	if err := n.UnixSockets(); err != nil {
		t.Fatalf("UnixSockets: %v", err)
	}
	dir := t.TempDir()
	tag := fmt.Sprintf("aigate-test-scratch-%d", os.Getpid())
	allowed, self := filepath.Join(dir, "allowed.sock"), filepath.Join(dir, "self.sock")

	pol := &policy.Policy{Net: policy.NetDeny, Loopback: policy.LoopbackAll}
	for _, a := range []string{allowed, "@" + tag + "-allowed"} {
		pol.AllowUnix = append(pol.AllowUnix, policy.PathRule{Pattern: a})
	}
	c, err := policy.Compile(pol, policy.Env{})
	if err != nil {
		t.Fatal(err)
	}
	g := env.sandbox(n, 9, c.Net, nil, false)
	unixListener(t, env, "unix", allowed)
	unixListener(t, env, "unix", "@"+tag+"-allowed")

	m := n.unix.objs.UnixScratch
	ops := []string{
		"unix " + allowed,
		"unix @" + tag + "-allowed",
		"unixself " + self,
		"unixself @" + tag + "-self",
	}
	expect := func(what string, want syscall.Errno) {
		t.Helper()
		got, _ := env.run(g, ops...)
		for i, op := range ops {
			if got[i] != want {
				t.Errorf("%s: %q: errno %d, want %d", what, op, got[i], want)
			}
		}
	}
	expect("free buffers", 0)
	checkScratchOwners[netUnixUnixScratchBuf](t, "after the first run", m, 0, 0)

	// Every buffer held elsewhere: the allowed names are refused and
	// reported, and the names bound in the sandbox are not learned.
	t.Cleanup(func() { setScratchOwners[netUnixUnixScratchBuf](t, m, scratchSlots, 0) })
	setScratchOwners[netUnixUnixScratchBuf](t, m, scratchSlots, stranger)
	bound := n.unix.objs.UnixBound
	var k netUnixUnixBoundKey
	var v netUnixUnixBoundVal
	var learned []netUnixUnixBoundKey
	for it := bound.Iterate(); it.Next(&k, &v); {
		learned = append(learned, k)
	}
	for _, k := range learned {
		if err := bound.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	drain(n.Events())
	expect("every buffer held", syscall.EPERM)
	evs := nextEvents(t, n.Events(), len(ops))
	wantPaths := []string{allowed, "@" + tag + "-allowed", self, "@" + tag + "-self"}
	for i, ev := range evs {
		if ev.Path != wantPaths[i] || ev.Audit {
			t.Errorf("event %d with every buffer held: %+v, want path %q", i, ev, wantPaths[i])
		}
	}
	if it := bound.Iterate(); it.Next(&k, &v) {
		t.Errorf("a name was learned with every buffer held: %+v", k)
	}
	checkScratchOwners[netUnixUnixScratchBuf](t, "every buffer held", m, scratchSlots, stranger)

	// One buffer left: the programs use it, and give only it back.
	setScratchOwners[netUnixUnixScratchBuf](t, m, scratchSlots, 0)
	setScratchOwners[netUnixUnixScratchBuf](t, m, scratchSlots-1, stranger)
	expect("one free buffer", 0)
	checkScratchOwners[netUnixUnixScratchBuf](t, "one free buffer", m, scratchSlots-1, stranger)

	setScratchOwners[netUnixUnixScratchBuf](t, m, scratchSlots, 0)
	expect("free buffers again", 0)
	checkScratchOwners[netUnixUnixScratchBuf](t, "after the last run", m, 0, 0)
}
