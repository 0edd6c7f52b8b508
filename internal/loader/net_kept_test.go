//go:build linux

package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

var keptTestSeq atomic.Int32

// keptRootForTest points KeptRoot at a bpffs directory of the test's own,
// removed (with every pin in it) when the test ends. The tests that use
// it do not run in parallel: KeptRoot is the package's.
func keptRootForTest(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t)
	var fs syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/bpf", &fs); err != nil || fs.Type != 0xcafe4a11 {
		testutil.SkipUnlessKernel(t, "no BPF filesystem at /sys/fs/bpf")
	}
	dir := fmt.Sprintf("/sys/fs/bpf/aigate-test-kept-%d-%d", os.Getpid(), keptTestSeq.Add(1))
	old := KeptRoot
	KeptRoot = dir
	t.Cleanup(func() {
		KeptRoot = old
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// keptSetDir is the one set below root (after a Net with Keep opened).
func keptSetDir(t testing.TB, root string) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(root, "net-*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("kept sets in %s: %v %v", root, dirs, err)
	}
	return dirs[0]
}

func noneLive(uint64) bool { return false }

// openKept opens a Net with Keep (closed when the test ends unless the
// test closes it) and returns whether it adopted a kept set.
func openKept(t testing.TB, live func(uint64) bool) (*Net, bool, error) {
	t.Helper()
	n, err := OpenNet(NetOptions{Backend: "test", Keep: true, KeepLive: live})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			testutil.SkipUnlessKernel(t, fmt.Sprintf("cgroup sock_addr programs do not load: %v", err))
		}
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		if _, done := closedNets.Load(n); !done {
			if err := n.Close(); err != nil {
				t.Error(err)
			}
		}
	})
	adopted, why := n.KeptStatus()
	return n, adopted, why
}

// closedNets are the Nets a test closed itself (Close is not idempotent).
var closedNets sync.Map

// programIDs are the kernel's ids of every program n holds, by name.
func programIDs(t testing.TB, n *Net) map[string]ebpf.ProgramID {
	t.Helper()
	ids := map[string]ebpf.ProgramID{}
	add := func(objs any) {
		_ = eachObject(objs, func(name string, v reflect.Value) error {
			p, ok := v.Interface().(*ebpf.Program)
			if !ok || p == nil {
				return nil
			}
			info, err := p.Info()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := info.ID()
			ids[name] = id
			return nil
		})
	}
	add(&n.objs)
	if n.unix != nil {
		add(&n.unix.objs)
	}
	if n.recv != nil {
		add(&n.recv.objs)
	}
	return ids
}

func closeNet(t testing.TB, n *Net) {
	t.Helper()
	closedNets.Store(n, true)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestKeptNetIsAdopted: the second Net with Keep uses the very programs the
// first one loaded (the same kernel ids: nothing is verified again).
func TestKeptNetIsAdopted(t *testing.T) {
	keptRootForTest(t)
	n1, adopted, why := openKept(t, noneLive)
	if adopted {
		t.Fatalf("the first Net adopted a set (%v)", why)
	}
	first := programIDs(t, n1)
	closeNet(t, n1)

	n2, adopted, why := openKept(t, noneLive)
	if !adopted {
		t.Fatalf("the second Net did not adopt the kept set: %v", why)
	}
	if second := programIDs(t, n2); !reflect.DeepEqual(first, second) {
		t.Fatalf("program ids: first %v, second %v", first, second)
	}
	if n2.unix == nil && n1.unix != nil {
		t.Fatal("the adopting Net lost the unix-socket programs")
	}
}

// TestKeptNetRefusesForeignPins: pins that are not exactly what the set
// pinned are not trusted; the Net loads its own programs and pins them in
// their place, and the next one adopts those.
func TestKeptNetRefusesForeignPins(t *testing.T) {
	cases := []struct {
		name  string
		forge func(t *testing.T, set string)
		why   string
	}{
		{"program of the same type and name", func(t *testing.T, set string) {
			p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
				Name: "aigate_connect4", Type: ebpf.CGroupSockAddr, AttachType: ebpf.AttachCGroupInet4Connect,
				License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			replacePin(t, filepath.Join(set, keptNet, "aigate_connect4"), p.Pin)
		}, "tag"},
		{"map of another layout", func(t *testing.T, set string) {
			m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			replacePin(t, filepath.Join(set, keptNet, "net_policies"), m.Pin)
		}, "net_policies"},
		{"shared map that is another map", func(t *testing.T, set string) {
			spec, err := loadNet()
			if err != nil {
				t.Fatal(err)
			}
			m, err := ebpf.NewMap(spec.Maps["sandboxes"])
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			part, _ := sharingPart(t, set)
			replacePin(t, filepath.Join(set, part, "sandboxes"), m.Pin)
		}, "not the map it shares"},
		{"no record of the tags", func(t *testing.T, set string) {
			if err := os.Remove(filepath.Join(set, keptTags)); err != nil {
				t.Fatal(err)
			}
		}, "tags"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := keptRootForTest(t)
			n1, _, _ := openKept(t, noneLive)
			first := programIDs(t, n1)
			closeNet(t, n1)
			tc.forge(t, keptSetDir(t, root))

			n2, adopted, why := openKept(t, noneLive)
			if tc.name == "shared map that is another map" {
				// The network part is adopted; the part that shares its
				// sandbox table (unix sockets), given another table, is
				// not.
				_, prog := sharingPart(t, keptSetDir(t, root))
				if !adopted {
					t.Fatalf("the network part was not adopted: %v", why)
				}
				second := programIDs(t, n2)
				if second[prog] == 0 || second[prog] == first[prog] {
					t.Fatalf("the part of %s was adopted with a foreign sandbox table (ids %d then %d)", prog, first[prog], second[prog])
				}
				if n2.kept.notFound == nil || !strings.Contains(n2.kept.notFound.Error(), tc.why) {
					t.Fatalf("why the part of %s was not adopted: %v, want it to mention %q", prog, n2.kept.notFound, tc.why)
				}
				return
			}
			if adopted {
				t.Fatalf("a forged %s was adopted", tc.name)
			}
			if why == nil || !strings.Contains(why.Error(), tc.why) {
				t.Fatalf("why not adopted: %v, want it to mention %q", why, tc.why)
			}
			if second := programIDs(t, n2); second["aigate_connect4"] == first["aigate_connect4"] {
				t.Fatal("a program of the first set is in use")
			}
			reloaded := programIDs(t, n2)
			closeNet(t, n2)

			n3, adopted, why := openKept(t, noneLive)
			if !adopted {
				t.Fatalf("the set pinned in place of the forged one was not adopted: %v", why)
			}
			if got := programIDs(t, n3); !reflect.DeepEqual(got, reloaded) {
				t.Fatalf("program ids: %v, want the reloaded %v", got, reloaded)
			}
		})
	}
}

// sharingPart is the kept part of set that shares the network part's
// sandbox table in these tests, and its program: the unix-socket programs,
// which need Linux 6.7 (the host and the 6.12 guest run the case; the
// receive check and the exit recorder share it too, but OpenNet here opens
// neither: no kprobes on the host, and the recorder is the backend's).
func sharingPart(t *testing.T, set string) (part, prog string) {
	t.Helper()
	if !kernelAtLeast(t, 6, 7) {
		// skip-ok: version-dependent; the host (6.18) and the 6.12 guest run it.
		t.Skip("no cgroup connect_unix programs before Linux 6.7: no kept part here shares the sandbox table")
	}
	if _, err := os.Stat(filepath.Join(set, keptUnix, "sandboxes")); err != nil {
		t.Fatalf("Linux 6.7+ but no kept unix part: %v", err)
	}
	return keptUnix, "aigate_connect_unix"
}

func replacePin(t *testing.T, path string, pin func(string) error) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := pin(path); err != nil {
		t.Fatal(err)
	}
}

// TestKeptNetRefusesDirectories: a set directory that is not root's, or
// that others may enter, is not used at all.
func TestKeptNetRefusesDirectories(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(dir string) error
		why    string
	}{
		{"mode 0755", func(dir string) error { return os.Chmod(dir, 0o755) }, "mode"},
		{"owned by a user", func(dir string) error { return os.Chown(dir, 1000, 1000) }, "uid 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := keptRootForTest(t)
			n1, _, _ := openKept(t, noneLive)
			closeNet(t, n1)
			for _, dir := range []string{root, keptSetDir(t, root)} {
				if err := tc.change(dir); err != nil {
					t.Fatal(err)
				}
				_, adopted, why := openKept(t, noneLive)
				if adopted || why == nil || !strings.Contains(why.Error(), "not kept") || !strings.Contains(why.Error(), tc.why) {
					t.Fatalf("%s %s: adopted %v, why %v", dir, tc.name, adopted, why)
				}
				if err := os.Chown(dir, 0, 0); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestKeptNetRefusesSymlink: /sys/fs/bpf is writable by everyone, and
// bpffs has symbolic links: a link where the kept root should be is not
// followed.
func TestKeptNetRefusesSymlink(t *testing.T) {
	root := keptRootForTest(t)
	target := root + "-target"
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(target) })
	if err := os.Symlink(target, root); err != nil {
		t.Fatal(err)
	}
	_, adopted, why := openKept(t, noneLive)
	if adopted || why == nil || !strings.Contains(why.Error(), "not kept") {
		t.Fatalf("a symbolic link as the kept root: adopted %v, why %v", adopted, why)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Fatalf("a set was pinned through the link: %v", ents)
	}
}

// TestKeptNetIsOneRunsAtATime: a second Net while the first holds the set
// loads its own programs (the set's maps are the first one's).
func TestKeptNetIsOneRunsAtATime(t *testing.T) {
	keptRootForTest(t)
	n1, _, _ := openKept(t, noneLive)
	n2, adopted, why := openKept(t, noneLive)
	if adopted || why == nil || !strings.Contains(why.Error(), "another run") {
		t.Fatalf("second Net at the same time: adopted %v, why %v", adopted, why)
	}
	if programIDs(t, n1)["aigate_connect4"] == programIDs(t, n2)["aigate_connect4"] {
		t.Fatal("two Nets share programs")
	}
}

// TestKeptNetForgetsEarlierRules: a run that died without removing its
// sandbox's rules (killed) leaves them in the kept maps; once its sandbox
// cgroup is gone, the next run adopts the set emptied, so a policy id it
// reuses gets none of the dead run's rules. While the cgroup lives, the
// set is left as it is and the next run loads its own programs.
func TestKeptNetForgetsEarlierRules(t *testing.T) {
	env := newNetEnv(t)
	root := keptRootForTest(t)
	live := func(id uint64) bool {
		for _, g := range env.liveGroups() {
			if g == id {
				return true
			}
		}
		return false
	}
	const id = 1
	allow := compileNet(t, policy.NetDeny, policy.LoopbackNone, "10.1.2.3:8443")

	// Run 1: a sandbox allowed 10.1.2.3:8443, then "killed": its Net
	// closes with the table entry, settings and trie entries still written.
	n1, _, _ := openKept(t, live)
	dead, err := cgroup.Create(env.parent, "dead")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Remove() })
	if err := n1.AddSandbox(id, dead, false); err != nil {
		t.Fatal(err)
	}
	r := &netRules{n: n1, id: id}
	if err := r.set(allow.Net, nil); err != nil {
		t.Fatal(err)
	}
	l, err := n1.Attach(id, dead.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := env.run(dead, "tcp 10.1.2.3:8443", "tcp 10.1.2.3:9"); got[0] != 0 || got[1] != syscall.EPERM {
		t.Fatalf("run 1's allowed and denied connects: %v", got)
	}
	closeNet(t, n1)
	// Killed: its programs stay attached (the guard holds the links) and
	// refuse one more connect, whose event no reader takes.
	if got, _ := env.run(dead, "tcp 10.1.2.3:9"); got[0] != syscall.EPERM {
		t.Fatalf("run 1's denied connect after its end: %v", got[0])
	}
	l.Close()

	// Its cgroup still exists: the set is left to it.
	n2, adopted, why := openKept(t, live)
	if adopted || why == nil || !strings.Contains(why.Error(), "still confine") {
		t.Fatalf("with the killed run's cgroup alive: adopted %v, why %v", adopted, why)
	}
	closeNet(t, n2)
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(keptSetDir(t, root), keptNet, "sandboxes"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	var sb kernelSandbox
	if err := pinned.Lookup(dead.ID, &sb); err != nil {
		t.Fatalf("the live sandbox's entry was touched: %v", err)
	}

	// Run 3, after the dead sandbox's cgroup went: adopted, and policy id
	// 1 (deny, nothing allowed) refuses what run 1's policy 1 allowed.
	if err := dead.Remove(); err != nil {
		t.Fatal(err)
	}
	n3, adopted, why := openKept(t, live)
	if !adopted {
		t.Fatalf("the set was not adopted once the cgroup was gone: %v", why)
	}
	if err := n3.objs.Sandboxes.Lookup(dead.ID, &sb); err == nil {
		t.Fatal("the dead run's sandbox is still in the table")
	}
	var key netNetKey4
	if err := n3.objs.NetAllow4.NextKey(nil, &key); err == nil {
		t.Fatalf("an allow entry of an earlier run is kept: %+v", key)
	}
	stats, err := n3.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range stats.Violations {
		if c.Value != 0 {
			t.Fatalf("run 1's counters are counted for run 3: %+v", stats.Violations)
		}
	}
	if _, err := n3.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-n3.Events():
		t.Fatalf("run 3 reads run 1's event: %+v", e)
	default:
	}
	deny := compileNet(t, policy.NetDeny, policy.LoopbackNone)
	g := env.sandbox(n3, id, deny.Net, nil, false)
	if got, _ := env.run(g, "tcp 10.1.2.3:8443"); got[0] != syscall.EPERM {
		t.Fatalf("run 3's connect to what run 1 allowed: %v, want EPERM", got[0])
	}
}

// liveGroups lists the cgroup ids below the test's parent.
func (e *netEnv) liveGroups() []uint64 {
	root, err := cgroup.Mountpoint()
	if err != nil {
		return nil
	}
	var ids []uint64
	_ = filepath.Walk(filepath.Join(root, e.parent), func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			ids = append(ids, fi.Sys().(*syscall.Stat_t).Ino)
		}
		return nil
	})
	return ids
}

// BenchmarkOpenNetKept: opening and closing the standalone network object
// as an embedded run does (with the unix-socket programs), loaded afresh
// (the baseline: what every embedded run paid before Keep) against
// adopted from a kept set, interleaved over bench.Rounds() rounds of b.N
// opens (bench/README.md). In one process cilium/ebpf parses the kernel's
// BTF once, so the baseline here is cheaper than a new process's load.
func BenchmarkOpenNetKept(b *testing.B) {
	keptRootForTest(b)
	openClose := func(opts NetOptions) (float64, error) {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			n, err := OpenNet(opts)
			if err != nil {
				return 0, err
			}
			if err := n.Close(); err != nil {
				return 0, err
			}
		}
		return float64(time.Since(start).Nanoseconds()) / float64(b.N), nil
	}
	kept := NetOptions{Backend: "bench", Keep: true, KeepLive: noneLive}
	if _, err := openClose(kept); err != nil { // pins the set
		b.Fatal(err)
	}
	r, err := bench.Pair(bench.Rounds(),
		func() (float64, error) { return openClose(NetOptions{Backend: "bench"}) },
		func() (float64, error) { return openClose(kept) })
	if err != nil {
		b.Fatal(err)
	}
	r.Report(b)
}
