//go:build linux

package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil/scratchops"
)

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

	m := scratchops.Buffers[netUnixUnixScratchBuf]{Map: n.unix.objs.UnixScratch, Owner: func(v *netUnixUnixScratchBuf) *uint64 { return &v.Owner }}
	slots := m.Slots()
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
	m.Check(t, "after the first run", 0, 0)

	// Every buffer held elsewhere: the allowed names are refused and
	// reported, and the names bound in the sandbox are not learned.
	t.Cleanup(func() { m.Set(t, slots, 0) })
	m.Set(t, slots, scratchops.Stranger)
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
	m.Check(t, "every buffer held", slots, scratchops.Stranger)

	// One buffer left: the programs use it, and give only it back.
	m.Set(t, slots, 0)
	m.Set(t, slots-1, scratchops.Stranger)
	expect("one free buffer", 0)
	m.Check(t, "one free buffer", slots-1, scratchops.Stranger)

	m.Set(t, slots, 0)
	expect("free buffers again", 0)
	m.Check(t, "after the last run", 0, 0)
}
