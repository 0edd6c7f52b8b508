//go:build linux

package loader

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// netPinDir is a fresh bpffs directory for a pinned Net, removed (which
// detaches any link still pinned there) at cleanup.
func netPinDir(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	var fs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		testutil.SkipUnlessKernel(t, "no bpffs mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
	}
	dir := fmt.Sprintf("/sys/fs/bpf/aigate-test-%d-%s/net", os.Getpid(), t.Name())
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(dir)) })
	return dir
}

// TestNetPinSurvivesRelease: a Net sharing another object's maps (as it
// shares the LSM's) pins its maps and the sandbox's cgroup links; after
// Release the policy and DNS steering still hold with no descriptor open,
// a second OpenNet adopts the links and the entries written (a policy
// written over them replaces them), and Close removes every pin.
func TestNetPinSurvivesRelease(t *testing.T) {
	env := newNetEnv(t)
	dir := netPinDir(t)
	owner := openNet(t, NetOptions{Backend: "owner"})
	o := &owner.objs
	shared := map[string]*ebpf.Map{
		MapSandboxes: o.Sandboxes, MapSandboxLevels: o.SandboxLevels, MapEvents: o.Events, MapCounters: o.Counters,
	}
	if _, err := OpenNet(NetOptions{MapReplacements: shared, PinPath: dir}); err == nil {
		t.Fatal("OpenNet pinned without SkipUnix")
	}
	first, err := OpenNet(NetOptions{MapReplacements: shared, PinPath: dir, SkipUnix: true})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	released := false
	t.Cleanup(func() {
		if !released {
			first.Close()
		}
	})
	if got := first.TakeAdopted(); len(got) != 0 {
		t.Fatalf("fresh pin directory: adopted %v", got)
	}
	g := env.cgroup("pinned")
	if err := owner.AddSandbox(9, g, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.RemoveSandbox(g.ID) })
	r := &netRules{n: first, id: 9}
	deny := compileNet(t, policy.NetDeny, policy.LoopbackNone).Net
	if err := r.set(deny, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.attach(g); err != nil {
		t.Fatal(err)
	}
	port := echoProxy(t, env)
	if err := first.SetDNSProxy(9, netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback(), port); err != nil {
		t.Fatal(err)
	}
	ops := []string{"tcp 10.1.2.3:80", "dnsudp 10.53.0.1:53"}
	want := []syscall.Errno{syscall.EPERM, 0}
	if got, _ := env.run(g, ops...); !slices.Equal(got, want) {
		t.Fatalf("pinned, open: errnos %v, want %v", got, want)
	}

	if err := errors.Join(r.links.Close(), first.Release()); err != nil {
		t.Fatal(err)
	}
	released = true
	for _, name := range []string{"layout", "net_policies", "net_deny4", "dns_proxies", "9_connect4", "9_sock_release"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("after Release: %v", err)
		}
	}
	if got, _ := env.run(g, ops...); !slices.Equal(got, want) {
		t.Fatalf("released, no process holds the object: errnos %v, want %v", got, want)
	}

	second, err := OpenNet(NetOptions{MapReplacements: shared, PinPath: dir, SkipUnix: true})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			second.Close()
		}
	})
	adopted := second.TakeAdopted()
	if len(adopted) != 1 || adopted[0].ID != 9 {
		t.Fatalf("adopted %+v, want policy 9", adopted)
	}
	if n := len(adopted[0].Links.links); n != len(netHooks) {
		t.Fatalf("%d links adopted, want %d", n, len(netHooks))
	}
	if !maps.Equal(adopted[0].Entries, r.entries) {
		t.Fatalf("adopted entries %v, want those written %v", adopted[0].Entries, r.entries)
	}
	if again := second.TakeAdopted(); len(again) != 0 {
		t.Fatalf("adopted twice: %+v", again)
	}
	if got, _ := env.run(g, ops...); !slices.Equal(got, want) {
		t.Fatalf("adopted (programs of the new load): errnos %v, want %v", got, want)
	}
	// The adopted policy is replaced, not added to: an allow-by-default
	// policy with a deny entry lets 10.1.2.3 through and stops 10.9.0.0/16.
	r = &netRules{n: second, id: 9, links: adopted[0].Links, entries: adopted[0].Entries}
	c := compileNet(t, policy.NetAllow, policy.LoopbackNone)
	c.Net.Deny = append(c.Net.Deny, policy.NetEntry{Prefix: netip.MustParsePrefix("10.9.0.0/16"), Rule: 1})
	if err := r.set(c.Net, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.run(g, "tcp 10.1.2.3:80", "tcp 10.9.1.1:80"); got[0] == syscall.EPERM || got[1] != syscall.EPERM {
		t.Fatalf("after SetPolicy on the adopted sandbox: errnos %v, want not EPERM, EPERM", got)
	}

	// Another layout is refused, never mixed.
	var stamp uint64
	if err := second.pins.layout.Lookup(uint32(0), &stamp); err != nil {
		t.Fatal(err)
	}
	if err := second.pins.layout.Update(uint32(0), stamp+1, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenNet(NetOptions{MapReplacements: shared, PinPath: dir, SkipUnix: true}); !errors.Is(err, ErrPinLayout) {
		t.Fatalf("OpenNet over another layout: %v, want ErrPinLayout", err)
	}
	if err := second.pins.layout.Update(uint32(0), stamp, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}

	closed = true
	if err := errors.Join(r.remove(), second.Close()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Close the pin directory is still there: %v", err)
	}
	if got, _ := env.run(g, "tcp 10.9.1.1:80"); got[0] == syscall.EPERM {
		t.Error("after Close the programs still enforce")
	}
}
