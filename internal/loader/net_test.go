//go:build linux

package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// Addresses that are local inside the test's network namespace, so that
// "allowed" connections to non-loopback destinations really succeed
// without any packet leaving the namespace.
var netnsAddrs = []string{
	"10.1.2.3/32", "10.9.9.9/32", "169.254.169.254/32",
	"2001:db8::1/128", "2001:db8::2/128", "fd00:ec2::254/128",
}

var netTestSeq atomic.Int32

// netEnv is one test's world: a network namespace and a cgroup parent
// directory, both removed when the test ends.
type netEnv struct {
	t      testing.TB
	ns     *testutil.NetNS
	parent string // below the cgroup v2 mount
	rules  map[uint32]*netRules
}

func newNetEnv(t testing.TB) *netEnv {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	seq := netTestSeq.Add(1)
	e := &netEnv{
		t:      t,
		ns:     testutil.NewNetNS(t, fmt.Sprintf("aigate-net-%d-%d", os.Getpid(), seq), netnsAddrs...),
		parent: fmt.Sprintf("aigate-test/net-%d-%d", os.Getpid(), seq),
		rules:  map[uint32]*netRules{},
	}
	t.Cleanup(func() {
		root, _ := cgroup.Mountpoint()
		_ = os.Remove(filepath.Join(root, e.parent))
		_ = os.Remove(filepath.Join(root, "aigate-test"))
	})
	return e
}

// openNet opens a standalone Net, skipping where sock_addr programs cannot
// load.
func openNet(t testing.TB, opts NetOptions) *Net {
	t.Helper()
	n, err := OpenNet(opts)
	var ve *ebpf.VerifierError
	if err != nil {
		// A verifier rejection is a bug in our programs, never a reason to skip.
		if !errors.As(err, &ve) && (errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EINVAL)) {
			testutil.SkipUnlessKernel(t, fmt.Sprintf("cgroup sock_addr programs do not load: %v", err))
		}
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// cgroup makes a cgroup below the test's parent, removed with the test.
func (e *netEnv) cgroup(name string) *cgroup.Group {
	e.t.Helper()
	g, err := cgroup.Create(e.parent, name)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			e.t.Error(err)
		}
	})
	return g
}

// sandbox makes a cgroup confined by np under policy id.
func (e *netEnv) sandbox(n *Net, id uint32, np policy.NetPolicy, resolved map[string][]netip.Addr, audit bool) *cgroup.Group {
	e.t.Helper()
	g := e.cgroup(fmt.Sprintf("sb%d", id))
	r := &netRules{n: n, id: id}
	e.rules[id] = r
	if err := n.AddSandbox(id, g, audit); err != nil {
		e.t.Fatal(err)
	}
	r.tabled = g.ID
	if err := r.set(np, resolved); err != nil {
		e.t.Fatal(err)
	}
	if err := r.attach(g); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := r.remove(); err != nil {
			e.t.Error(err)
		}
	})
	return g
}

// netRules writes one sandbox's policy through the Net's writers, the way
// internal/egress does (without its claims: one rule per entry), and
// keeps what it wrote so that remove deletes it.
type netRules struct {
	n       *Net
	id      uint32
	links   *NetLinks
	cgroup  uint64 // attached
	tabled  uint64 // entered into the standalone table
	entries map[NetEntry]policy.RuleID
	unix    UnixAllow
}

// set writes np, new entries first, then the settings, then deletes the
// stale entries.
func (r *netRules) set(np policy.NetPolicy, resolved map[string][]netip.Addr) error {
	want := map[NetEntry]policy.RuleID{}
	add := func(e NetEntry, rule policy.RuleID) {
		e.Prefix = e.Prefix.Masked()
		if old, ok := want[e]; !ok || rule < old {
			want[e] = rule
		}
	}
	for _, d := range np.Deny {
		add(NetEntry{Prefix: d.Prefix, Port: d.Port, Deny: true}, d.Rule)
	}
	for _, a := range np.Allow {
		add(NetEntry{Prefix: a.Prefix, Port: a.Port}, a.Rule)
	}
	for _, d := range np.Domains {
		for _, a := range resolved[d.Name] {
			add(NetEntry{Prefix: netip.PrefixFrom(a, a.BitLen()), Port: d.Port}, d.Rule)
		}
	}
	for e, rule := range want {
		if err := r.n.WriteEntry(r.id, e, rule); err != nil {
			return err
		}
	}
	if err := r.n.WriteSettings(r.id, np); err != nil {
		return err
	}
	for e := range r.entries {
		if _, ok := want[e]; !ok {
			if err := r.n.DeleteEntry(r.id, e); err != nil {
				return err
			}
		}
	}
	r.entries = want
	var err error
	r.unix, err = r.n.WriteUnixAllow(r.id, r.unix, np.Unix)
	return err
}

func (r *netRules) attach(g *cgroup.Group) error {
	l, err := r.n.Attach(r.id, g.Path)
	if err != nil {
		return err
	}
	r.links, r.cgroup = l, g.ID
	return nil
}

// remove undoes set, attach and the standalone sandbox entry.
func (r *netRules) remove() error {
	var errs []error
	errs = append(errs, r.n.Detach(r.links))
	if r.tabled != 0 {
		errs = append(errs, r.n.RemoveSandbox(r.tabled))
	}
	for e := range r.entries {
		errs = append(errs, r.n.DeleteEntry(r.id, e))
	}
	errs = append(errs, r.n.RemovePolicy(r.id, r.unix, r.cgroup))
	*r = netRules{n: r.n, id: r.id}
	return errors.Join(errs...)
}

// run starts the helper in g (nil: the test's own cgroup) inside the
// namespace and returns one errno per op, and the helper's pid.
func (e *netEnv) run(g *cgroup.Group, ops ...string) ([]syscall.Errno, int) {
	e.t.Helper()
	return e.runFiles(g, nil, ops...)
}

// runFiles is run with files passed to the helper as fd 3 onwards.
func (e *netEnv) runFiles(g *cgroup.Group, files []*os.File, ops ...string) ([]syscall.Errno, int) {
	e.t.Helper()
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", e.ns.Name, self)
	cmd.Env = append(os.Environ(), netHelperEnv+"="+strings.Join(ops, ";"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.ExtraFiles = files
	if g != nil {
		fd, err := g.OpenFD()
		if err != nil {
			e.t.Fatal(err)
		}
		defer fd.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	}
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("helper %q: %v: %s", ops, err, stderr.String())
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(ops) {
		e.t.Fatalf("helper %q printed %q", ops, out)
	}
	res := make([]syscall.Errno, len(lines))
	for i, l := range lines {
		v, err := strconv.Atoi(l)
		if err != nil {
			e.t.Fatalf("helper %q printed %q", ops, out)
		}
		res[i] = syscall.Errno(v)
	}
	return res, cmd.Process.Pid
}

// compile builds a policy the way the CLI does, from allow_net entries.
func compileNet(t testing.TB, mode policy.NetMode, loopback policy.LoopbackMode, allow ...string) *policy.Compiled {
	t.Helper()
	p := &policy.Policy{Net: mode, Loopback: loopback}
	for _, a := range allow {
		p.AllowNet = append(p.AllowNet, policy.Endpoint{Raw: a})
	}
	c, err := policy.Compile(p, policy.Env{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// resolvedByAddr turns SetPolicy's name -> addresses into MatchConnect's
// address -> rules.
func resolvedByAddr(c *policy.Compiled, byName map[string][]netip.Addr) map[netip.Addr][]policy.RuleID {
	out := map[netip.Addr][]policy.RuleID{}
	for _, d := range c.Net.Domains {
		for _, a := range byName[d.Name] {
			out[a] = append(out[a], d.Rule)
		}
	}
	return out
}

type netCase struct {
	op   string // tcp, udp, sendto
	dst  string
	deny bool
}

// TestNetVerdicts sends a table of destinations through the kernel and
// through policy.MatchConnect for several policies and asserts that both
// agree with the expected verdict.
func TestNetVerdicts(t *testing.T) {
	env := newNetEnv(t)
	n := openNet(t, NetOptions{Backend: "test"})
	resolved := map[string][]netip.Addr{
		"example.test": {netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("2001:db8::2")},
	}
	tests := []struct {
		name     string
		mode     policy.NetMode
		loopback policy.LoopbackMode
		allow    []string
		cases    []netCase
	}{
		{"deny with loopback", policy.NetDeny, policy.LoopbackAll, []string{"10.1.2.3:8443", "2001:db8::1", "example.test:443"}, []netCase{
			{"tcp", "127.0.0.1:0", false},
			{"tcp", "127.0.0.2:0", false},
			{"tcp", "[::1]:0", false},
			{"tcp", "0.0.0.0:0", false},
			{"tcp", "10.1.2.3:8443", false},
			{"tcp", "10.1.2.3:8444", true},
			{"udp", "10.1.2.3:8443", false},
			{"udp", "10.1.2.3:8444", true},
			{"sendto", "10.1.2.3:8443", false},
			{"sendto", "10.1.2.3:9", true},
			{"tcp", "[2001:db8::1]:80", false},
			{"sendto", "[2001:db8::1]:53", false},
			{"tcp", "[::ffff:10.1.2.3]:8443", false},
			{"tcp", "[::ffff:10.1.2.3]:8444", true},
			{"sendto", "[::ffff:10.1.2.3]:9", true},
			{"udp", "[::ffff:10.1.2.3]:8443", false},
			{"tcp", "10.9.9.9:443", false},
			{"tcp", "10.9.9.9:80", true},
			{"tcp", "[2001:db8::2]:443", false},
			{"udp", "[2001:db8::2]:53", true},
			{"sendto", "[2001:db8::2]:443", false},
			{"tcp", "169.254.169.254:80", true},
			{"tcp", "[fd00:ec2::254]:80", true},
		}},
		{"deny without loopback", policy.NetDeny, policy.LoopbackNone, []string{"127.0.0.1"}, []netCase{
			{"tcp", "127.0.0.1:0", false},
			{"tcp", "127.0.0.2:0", true},
			{"tcp", "[::1]:0", true},
			{"tcp", "0.0.0.0:0", true},
			{"tcp", "[::ffff:127.0.0.1]:0", false},
			{"tcp", "[::ffff:127.0.0.2]:0", true},
			{"sendto", "[::1]:9", true},
			{"sendto", "127.0.0.1:9", false},
			{"udp", "10.1.2.3:53", true},
		}},
		{"allow with loopback", policy.NetAllow, policy.LoopbackAll, nil, []netCase{
			{"tcp", "10.1.2.3:8444", false},
			{"tcp", "[2001:db8::1]:80", false},
			{"tcp", "127.0.0.2:0", false},
			{"tcp", "169.254.169.254:80", true},
			{"udp", "169.254.169.254:53", true},
			{"sendto", "169.254.169.254:53", true},
			{"tcp", "[::ffff:169.254.169.254]:80", true},
			{"tcp", "[fd00:ec2::254]:80", true},
			{"sendto", "[fd00:ec2::254]:53", true},
		}},
		{"allow without loopback", policy.NetAllow, policy.LoopbackNone, nil, []netCase{
			{"tcp", "127.0.0.1:0", true},
			{"tcp", "[::1]:0", true},
			{"sendto", "[::ffff:127.0.0.1]:9", true},
			{"tcp", "10.1.2.3:80", false},
		}},
		{"deny, own loopback", policy.NetDeny, policy.LoopbackOwn, []string{"127.0.0.1:9"}, []netCase{
			// tcp ADDR:0 connects to the helper's own listener.
			{"tcp", "127.0.0.1:0", false},
			{"tcp", "127.0.0.2:0", false},
			{"tcp", "[::1]:0", false},
			{"tcp", "0.0.0.0:0", false},
			{"tcp", "[::]:0", false},
			{"tcp", "[::ffff:127.0.0.1]:0", false},
			// Nothing of the sandbox's is bound there: refused.
			{"udp", "127.0.0.1:53000", true},
			{"sendto", "[::1]:53000", true},
			{"sendto", "[::ffff:127.0.0.1]:53000", true},
			// A listed port.
			{"sendto", "127.0.0.1:9", false},
			{"tcp", "10.1.2.3:80", true},
		}},
		{"allow, own loopback", policy.NetAllow, policy.LoopbackOwn, nil, []netCase{
			{"tcp", "127.0.0.1:0", false},
			{"udp", "127.0.0.1:53000", true},
			{"tcp", "10.1.2.3:80", false},
		}},
		{"allow listing metadata", policy.NetAllow, policy.LoopbackAll, []string{"169.254.169.254"}, []netCase{
			{"tcp", "169.254.169.254:80", false},
			{"tcp", "[fd00:ec2::254]:80", true},
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := compileNet(t, tt.mode, tt.loopback, tt.allow...)
			g := env.sandbox(n, uint32(i+1), c.Net, resolved, false)
			var ops []string
			for _, cs := range tt.cases {
				ops = append(ops, cs.op+" "+cs.dst)
			}
			got, _ := env.run(g, ops...)
			byAddr := resolvedByAddr(c, resolved)
			for j, cs := range tt.cases {
				dst := netip.MustParseAddrPort(cs.dst)
				own := cs.op == "tcp" && dst.Port() == 0 // the helper's listener
				_, goDeny := c.MatchConnect(dst, byAddr, own)
				want := syscall.Errno(0)
				if cs.deny {
					want = syscall.EPERM
				}
				if got[j] != want {
					t.Errorf("%s %s: kernel errno %v (%d), want %v", cs.op, cs.dst, got[j], got[j], want)
				}
				if goDeny != cs.deny {
					t.Errorf("%s %s: MatchConnect denies=%v, want %v", cs.op, cs.dst, goDeny, cs.deny)
				}
			}
		})
	}
}
