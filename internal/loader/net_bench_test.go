//go:build linux

package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/policy"
)

// BenchmarkNetConnect measures what the programs add to a UDP connect (the
// cheapest syscall that runs connect4: no handshake hides the cost) and to
// an unconnected UDP sendto (sendmsg4), from a helper process placed in:
//
//	outside: a cgroup with the programs attached that is not a sandbox
//	         (current_sandbox's early return; a sandbox lives at the same
//	         cgroup level, so the level mask does not short-cut it)
//	inside:  a sandbox whose deny-mode policy allows the destination by
//	         an LPM hit (two trie lookups on the deny trie, two on allow)
//
// each against a baseline helper in a cgroup with no programs at all,
// interleaved over bench.Rounds() rounds of b.N calls (bench/README.md).
// The kernel's own accounting of the program's run time is reported too
// (prog-ns/op, from one more run after the rounds: the accounting itself
// costs two clock reads per run, which must not inflate the ratio).
func BenchmarkNetConnect(b *testing.B) {
	env := newNetEnv(b)
	n := openNet(b, NetOptions{})
	c := compileNet(b, policy.NetDeny, policy.LoopbackNone, "10.1.2.3")
	inside := env.sandbox(n, 1, c.Net, nil, false)
	outside := env.cgroup("outside")
	l, err := n.Attach(2, outside.Path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Detach(l) })
	none := env.cgroup("none")
	for _, op := range []string{"udp", "sendto"} {
		prog := n.objs.AigateConnect4
		if op == "sendto" {
			prog = n.objs.AigateSendmsg4
		}
		for _, place := range []struct {
			name string
			g    *cgroup.Group
		}{{"outside", outside}, {"inside", inside}} {
			b.Run(op+"/"+place.name, func(b *testing.B) {
				r, err := bench.Pair(bench.Rounds(),
					func() (float64, error) { return env.bench(none, op, "10.1.2.3:9", b.N), nil },
					func() (float64, error) { return env.bench(place.g, op, "10.1.2.3:9", b.N), nil })
				if err != nil {
					b.Fatal(err)
				}
				r.Report(b)
				if ns, ok := progRunNS(prog, func() { env.bench(place.g, op, "10.1.2.3:9", b.N) }); ok {
					b.ReportMetric(ns, "prog-ns/op")
				}
			})
		}
	}
}

// BenchmarkNetLoopbackTCP measures what the ingress program adds to a TCP
// connection over loopback (connect, accept, close) whose listener is in a
// sandbox (net: allow, with one IDE lock port guarded, not this one): its
// SYN reaches a listening socket, so the program looks the sandbox up and
// then the port (ide_ports). Against a helper in a cgroup with no
// programs, interleaved over bench.Rounds() rounds. Compare its ratio
// between two builds to see a change of the ingress program.
func BenchmarkNetLoopbackTCP(b *testing.B) {
	env := newNetEnv(b)
	n := openNet(b, NetOptions{})
	c := compileNet(b, policy.NetAllow, policy.LoopbackOwn)
	inside := env.sandbox(n, 1, c.Net, nil, false)
	guardOnePort(b, n, inside.ID)
	none := env.cgroup("none")
	r, err := bench.Pair(bench.Rounds(),
		func() (float64, error) { return env.bench(none, "tcploop", "127.0.0.1:0", b.N), nil },
		func() (float64, error) { return env.bench(inside, "tcploop", "127.0.0.1:0", b.N), nil })
	if err != nil {
		b.Fatal(err)
	}
	r.Report(b)
}

// progRunNS runs fn with the kernel's run-time accounting on and returns
// prog's mean run time during it; false where the accounting is refused.
func progRunNS(prog *ebpf.Program, fn func()) (float64, bool) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return 0, false
	}
	defer stats.Close()
	before, err := prog.Stats()
	if err != nil {
		return 0, false
	}
	fn()
	after, err := prog.Stats()
	if err != nil || after.RunCount <= before.RunCount {
		return 0, false
	}
	return float64(after.Runtime-before.Runtime) / float64(after.RunCount-before.RunCount), true
}

// bench runs "bench op dst n" in the helper and returns ns per call.
func (e *netEnv) bench(g *cgroup.Group, op, dst string, n int) float64 {
	e.t.Helper()
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	fd, err := g.OpenFD()
	if err != nil {
		e.t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("ip", "netns", "exec", e.ns.Name, self)
	cmd.Env = append(os.Environ(), netHelperEnv+"=bench "+op+" "+dst+" "+strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("bench helper: %v", err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		e.t.Fatalf("bench helper printed %q", out)
	}
	return v
}

// BenchmarkNetRemoveLearned measures the teardown of what the programs
// learn per sandbox (RemovePolicy's use counts and bound unix names), with
// entries of others sandboxes present in addr_use and unix_bound, against
// the teardown before the marks (baseline: both maps walked an entry per
// system call, whatever the sandbox left):
//
//	none:    the sandbox left nothing (most do): one lookup per map
//	learned: it left an entry in each map: both are walked, 256 entries
//	         per system call
//
// The baseline and learned put the sandbox's two entries and marks back
// before each teardown (four map updates, against two walks of 65,536
// buckets).
func BenchmarkNetRemoveLearned(b *testing.B) {
	n := openNet(b, NetOptions{})
	if n.unix == nil {
		b.Fatalf("no unix-socket programs: %v", n.UnixSockets())
	}
	var mark uint8 = 1
	put := func(policyID uint32, cgroupID uint64) error {
		k := useKey(policyID, netip.AddrFrom4([4]byte{10, 0, byte(policyID >> 8), byte(policyID)}))
		bk := netUnixUnixBoundKey{CgroupId: cgroupID}
		bk.N.Abstract = 4
		copyName(&bk.N, "test")
		for _, u := range []struct {
			m    *ebpf.Map
			k, v any
		}{
			{n.objs.AddrUsePolicies, policyID, mark}, {n.objs.AddrUse, k, int64(1)},
			{n.unix.objs.UnixBoundCgroups, cgroupID, mark}, {n.unix.objs.UnixBound, bk, netUnixUnixBoundVal{}},
		} {
			if err := u.m.Update(u.k, u.v, ebpf.UpdateAny); err != nil {
				return err
			}
		}
		return nil
	}
	remove := func(policyID uint32, cgroupID uint64) error {
		return errors.Join(n.removeDNS(policyID), n.forgetBound(cgroupID))
	}
	// What removeDNS and forgetBound did before the marks.
	walked := func(policyID uint32, cgroupID uint64) error {
		uses, err := keysOneByOne[netAddrUseKey, int64](n.objs.AddrUse,
			func(k *netAddrUseKey) bool { return k.PolicyId == policyID })
		if err != nil {
			return err
		}
		names, err := keysOneByOne[netUnixUnixBoundKey, netUnixUnixBoundVal](n.unix.objs.UnixBound,
			func(k *netUnixUnixBoundKey) bool { return k.CgroupId == cgroupID })
		if err != nil {
			return err
		}
		for _, k := range uses {
			if err := n.objs.AddrUse.Delete(k); err != nil {
				return err
			}
		}
		for _, k := range names {
			if err := n.unix.objs.UnixBound.Delete(k); err != nil {
				return err
			}
		}
		return errors.Join(n.ClearDNSProxy(policyID), n.objs.AddrUsePolicies.Delete(policyID),
			n.unix.objs.UnixBoundCgroups.Delete(cgroupID))
	}
	for _, others := range []int{0, 1000} {
		for _, learned := range []bool{false, true} {
			name := fmt.Sprintf("others=%d/none", others)
			if learned {
				name = fmt.Sprintf("others=%d/learned", others)
			}
			b.Run(name, func(b *testing.B) {
				for i := range others {
					if err := put(uint32(100+i), uint64(1_000_000+i)); err != nil {
						b.Fatal(err)
					}
				}
				b.Cleanup(func() {
					for i := range others {
						remove(uint32(100+i), uint64(1_000_000+i))
					}
				})
				r, err := bench.Pair(bench.Rounds(),
					func() (float64, error) {
						return bench.Batched(b.N, func() error { return errors.Join(put(7, 7), walked(7, 7)) })
					},
					func() (float64, error) {
						if !learned {
							return bench.Batched(b.N, func() error { return remove(8, 8) })
						}
						return bench.Batched(b.N, func() error { return errors.Join(put(8, 8), remove(8, 8)) })
					})
				if err != nil {
					b.Fatal(err)
				}
				r.Report(b)
			})
		}
	}
}
