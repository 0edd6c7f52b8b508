//go:build linux

package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/testutil/testcgroup"
)

// The kernel tests re-execute the test binary inside the sandbox cgroup and
// a network namespace the test made; the helper runs the operations in
// AIGATE_DNS_HELPER (";"-separated) and prints one result line each.
const helperEnv = "AIGATE_DNS_HELPER"

func init() { testutil.HelperOps(helperEnv, helperOp) }

// helperOp runs one of:
//
//	q udp|tcp RESOLVER NAME   ask RESOLVER (any address, port 53) for NAME's A
//	                          record: prints the rcode name and the first address
//	connect ADDR:PORT         TCP connect: prints the errno (0: connected)
//	go NAME PORT RESOLVER     Go's own resolver against RESOLVER, then connect
//	sendto RESOLVER NAME      like q udp, from an unconnected socket (sendto)
//	who                       prints the process id and comm
//	hold ADDR|- N             opens N descriptors and a UDP socket connected
//	                          to ADDR (none for -), prints the socket's port
//	                          (0 for none), and holds them until stdin closes
func helperOp(args []string) string {
	switch {
	case len(args) == 3 && args[0] == "hold":
		return hold(args[1], args[2])
	case len(args) == 1 && args[0] == "who":
		comm, _ := os.ReadFile("/proc/self/comm")
		return strconv.Itoa(os.Getpid()) + " " + strings.TrimSpace(string(comm))
	case len(args) == 3 && args[0] == "sendto":
		return sendtoQuery(args[1], args[2])
	case len(args) == 4 && args[0] == "q":
		c := &mdns.Client{Net: args[1], Timeout: 3 * time.Second}
		r, _, err := c.Exchange(new(mdns.Msg).SetQuestion(mdns.Fqdn(args[3]), mdns.TypeA), net.JoinHostPort(args[2], "53"))
		if err != nil {
			return "error " + strings.ReplaceAll(err.Error(), " ", "_")
		}
		out := mdns.RcodeToString[r.Rcode]
		for _, rr := range r.Answer {
			if a, ok := rr.(*mdns.A); ok {
				out += " " + a.A.String()
				break
			}
		}
		return out
	case len(args) == 2 && args[0] == "connect":
		return strconv.Itoa(int(connectErrno(args[1])))
	case len(args) == 4 && args[0] == "go":
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(args[3], "53"))
		}}
		addrs, err := r.LookupNetIP(context.Background(), "ip4", args[1])
		if err != nil || len(addrs) == 0 {
			return fmt.Sprintf("resolve-error %v", err != nil)
		}
		return strconv.Itoa(int(connectErrno(net.JoinHostPort(addrs[0].String(), args[2]))))
	}
	return "bad-op"
}

func hold(addr, nfds string) string {
	n, _ := strconv.Atoi(nfds)
	for range n {
		if _, err := unix.Dup(0); err != nil {
			return "error " + err.Error()
		}
	}
	port := 0
	if addr != "-" {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return "error " + err.Error()
		}
		defer c.Close()
		port = c.LocalAddr().(*net.UDPAddr).Port
	}
	fmt.Println(port)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return "done"
}

// sendtoQuery sends an A query for name to resolver:53 from an unconnected
// IPv4 UDP socket (bound to the wildcard address at the first send) and
// prints the answer's rcode.
func sendtoQuery(resolver, name string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "error socket"
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3})
	q, err := new(mdns.Msg).SetQuestion(mdns.Fqdn(name), mdns.TypeA).Pack()
	if err != nil {
		return "error pack"
	}
	to := &unix.SockaddrInet4{Addr: netip.MustParseAddr(resolver).As4(), Port: 53}
	if err := unix.Sendto(fd, q, 0, to); err != nil {
		return "error " + err.Error()
	}
	buf := make([]byte, 1500)
	n, from, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return "error " + strings.ReplaceAll(err.Error(), " ", "_")
	}
	if sa, ok := from.(*unix.SockaddrInet4); !ok || sa.Addr != to.Addr || sa.Port != 53 {
		return "error reply-from-wrong-source"
	}
	r := new(mdns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		return "error unpack"
	}
	return mdns.RcodeToString[r.Rcode]
}

func connectErrno(dst string) syscall.Errno {
	ap, err := netip.ParseAddrPort(dst)
	if err != nil {
		return 998
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 997
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

// world is one kernel test's namespace, cgroup, Net and proxy.
type world struct {
	t    *testing.T
	ns   *testutil.NetNS
	g    *cgroup.Group
	n    *loader.Net
	p    *Proxy
	up   *testutil.FakeDNS
	c    *policy.Compiled
	port int // of the TCP services on 10.1.2.3 and 10.1.2.4 in the namespace
	evs  chan events.Event
}

func newWorld(t *testing.T, ttl policy.DNS, allow ...string) *world {
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	w := &world{t: t, evs: make(chan events.Event, 64)}
	w.ns = testutil.NewNetNS(t, fmt.Sprintf("aigate-dns-%d", os.Getpid()), "10.1.2.3/32", "10.1.2.4/32", "10.1.2.5/32")
	n, err := loader.OpenNet(loader.NetOptions{Backend: "test"})
	var ve *ebpf.VerifierError
	if err != nil {
		if !errors.As(err, &ve) && (errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EINVAL)) {
			testutil.SkipUnlessKernel(t, fmt.Sprintf("cgroup sock_addr programs do not load: %v", err))
		}
		t.Fatalf("%+v", err)
	}
	w.n = n
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	g, err := cgroup.Create(fmt.Sprintf("aigate-test/dns-%d", os.Getpid()), "sb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
		root, _ := cgroup.Mountpoint()
		_ = os.Remove(root + fmt.Sprintf("/aigate-test/dns-%d", os.Getpid()))
		_ = os.Remove(root + "/aigate-test")
	})
	w.g = g
	w.c = compilePolicy(t, policy.NetDeny, policy.LoopbackNone, allow...)
	if err := n.AddSandbox(1, g, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.RemoveSandbox(g.ID) })
	sink := &kernelSink{n: n, claims: map[loader.NetEntry]map[policy.RuleID]bool{}}
	for _, e := range w.c.Net.Deny {
		if err := n.WriteEntry(1, loader.NetEntry{Prefix: e.Prefix, Port: e.Port, Deny: true}, e.Rule); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range w.c.Net.Allow {
		if err := n.WriteEntry(1, loader.NetEntry{Prefix: e.Prefix, Port: e.Port}, e.Rule); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.WriteSettings(1, w.c.Net); err != nil {
		t.Fatal(err)
	}
	links, err := n.Attach(1, g.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Detach(links) })

	// Services to connect to, and the proxy's sockets, inside the namespace;
	// the fake upstream stays on the host's loopback, where the proxy (outside
	// the sandbox) reaches it.
	w.up = testutil.StartFakeDNS(t)
	var udp []net.PacketConn
	var tcp []net.Listener
	w.ns.Do(func() {
		for _, a := range []string{"10.1.2.3", "10.1.2.4"} {
			l, err := net.Listen("tcp4", net.JoinHostPort(a, strconv.Itoa(w.port)))
			if err != nil {
				t.Fatal(err)
			}
			w.port = l.Addr().(*net.TCPAddr).Port
			testutil.AcceptAll(t, l)
		}
		var err error
		udp, tcp, err = listen(netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback())
		if err != nil {
			t.Fatal(err)
		}
		// In the namespace too, where the proxy's sock_diag socket must be.
		w.p, err = Start(Config{
			PolicyID: 1, Net: w.c.Net, TTL: ttl, Sink: sink, Upstreams: []string{w.up.Addr},
			Report: func(ev events.Event) { w.evs <- ev }, CgroupID: g.ID, CgroupPath: g.Path,
			// Generous: -race on a loaded 2-core machine overruns the default.
			OwnerBudget: time.Second,
			UDP:         udp, TCP: tcp,
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	p := w.p
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := n.SetDNSProxy(1, netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback(), p.Port()); err != nil {
		t.Fatal(err)
	}
	return w
}

// kernelSink writes the proxy's addresses into the Net's allow trie as
// internal/egress does (which these tests cannot import): an address stays
// allowed for a port while any domain rule still claims it.
type kernelSink struct {
	n      *loader.Net
	mu     sync.Mutex
	claims map[loader.NetEntry]map[policy.RuleID]bool
}

func (s *kernelSink) UpdateAddrs(policyID uint32, d policy.DomainEntry, add, remove []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	entry := func(a netip.Addr) loader.NetEntry {
		a = a.Unmap()
		return loader.NetEntry{Prefix: netip.PrefixFrom(a, a.BitLen()), Port: d.Port}
	}
	var errs []error
	for _, a := range add {
		e := entry(a)
		if s.claims[e] == nil {
			s.claims[e] = map[policy.RuleID]bool{}
		}
		s.claims[e][d.Rule] = true
		errs = append(errs, s.n.WriteEntry(policyID, e, minClaim(s.claims[e])))
	}
	for _, a := range remove {
		e := entry(a)
		delete(s.claims[e], d.Rule)
		if len(s.claims[e]) > 0 {
			errs = append(errs, s.n.WriteEntry(policyID, e, minClaim(s.claims[e])))
			continue
		}
		delete(s.claims, e)
		errs = append(errs, s.n.DeleteEntry(policyID, e))
	}
	return errors.Join(errs...)
}

func minClaim(rules map[policy.RuleID]bool) policy.RuleID {
	first, min := true, policy.RuleID(0)
	for r := range rules {
		if first || r < min {
			first, min = false, r
		}
	}
	return min
}

func (s *kernelSink) AddrInUse(policyID uint32, addr netip.Addr) (bool, error) {
	return s.n.AddrInUse(policyID, addr)
}

func compilePolicy(t *testing.T, mode policy.NetMode, loopback policy.LoopbackMode, allow ...string) *policy.Compiled {
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

// run executes ops in the sandbox (in=true) or only in the namespace.
func (w *world) run(in bool, ops ...string) []string {
	w.t.Helper()
	self, err := os.Executable()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", w.ns.Name, self)
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(ops, ";"))
	if in {
		fd, err := w.g.OpenFD()
		if err != nil {
			w.t.Fatal(err)
		}
		defer fd.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	}
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("helper %q: %v", ops, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(ops) {
		w.t.Fatalf("helper %q printed %q", ops, out)
	}
	return lines
}

func (w *world) svc(a string) string { return net.JoinHostPort(a, strconv.Itoa(w.port)) }

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// TestKernelAllowedDenied: an allowed name resolves through any resolver
// address, over UDP and TCP, IPv4 and IPv6, and its address then connects;
// a denied name gets REFUSED, an event, and no map entry.
func TestKernelAllowedDenied(t *testing.T) {
	w := newWorld(t, policy.DNS{}, "svc.test", "only443.test:443")
	w.up.Set("svc.test", "svc.test. 300 IN A 10.1.2.3")
	w.up.Set("only443.test", "only443.test. 300 IN A 10.1.2.5")
	w.up.Set("exfil.attacker.test", "exfil.attacker.test. 300 IN A 10.1.2.4")

	got := w.run(true, "connect "+w.svc("10.1.2.3"), "q udp 10.53.0.1 svc.test", "connect "+w.svc("10.1.2.3"),
		"q tcp 192.0.2.53 svc.test", "q udp 2001:db8::53 svc.test", "go svc.test "+strconv.Itoa(w.port)+" 198.51.100.1",
		"q udp 10.53.0.1 exfil.attacker.test", "connect "+w.svc("10.1.2.4"),
		"q udp 10.53.0.1 only443.test", "connect "+w.svc("10.1.2.5"))
	expect(t, got, "1", "NOERROR 10.1.2.3", "0", "NOERROR 10.1.2.3", "NOERROR 10.1.2.3", "0",
		"REFUSED", "1", "NOERROR 10.1.2.5", "1")

	var dnsEv bool
	for _, ev := range drain(w.evs) {
		dnsEv = dnsEv || ev.Op == events.OpDNS && ev.Domain == "exfil.attacker.test"
	}
	if !dnsEv {
		t.Error("no dns event for the refused name")
	}
	// Connect denials: the first before any DNS, 10.1.2.4 (never learned),
	// and 10.1.2.5 on a port its rule does not allow, named by the proxy
	// (the agent asks it through egress.DomainOf).
	var named bool
	for _, ev := range drain(w.n.Events()) {
		if d := w.p.DomainOf(ev.Addr.Addr()); ev.Addr.Addr() == netip.MustParseAddr("10.1.2.4") && d != "" {
			t.Errorf("a never-resolved address was named %q: %+v", d, ev)
		}
		named = named || ev.Addr.Addr() == netip.MustParseAddr("10.1.2.5") && w.p.DomainOf(ev.Addr.Addr()) == "only443.test"
	}
	if !named {
		t.Error("the deny event for a learned address does not carry its domain")
	}
	// Outside the sandbox nothing is steered: 10.53.0.1 does not exist there.
	if got := w.run(false, "q udp 10.53.0.1 svc.test"); !strings.HasPrefix(got[0], "error") {
		t.Errorf("unsandboxed query answered: %q", got[0])
	}
}

// TestKernelAnswerChanges: both answers connect while valid; the old one
// stops after the TTL floor.
func TestKernelAnswerChanges(t *testing.T) {
	w := newWorld(t, policy.DNS{MinTTL: 2 * time.Second, MaxTTL: 2 * time.Second}, "svc.test")
	var learned time.Time
	for try := 1; ; try++ {
		w.up.Set("svc.test", "svc.test. 1 IN A 10.1.2.3")
		got := w.run(true, "q udp 10.53.0.1 svc.test")
		learned = time.Now()
		w.up.Set("svc.test", "svc.test. 3600 IN A 10.1.2.4")
		got = append(got, w.run(true, "q udp 10.53.0.1 svc.test", "connect "+w.svc("10.1.2.3"), "connect "+w.svc("10.1.2.4"))...)
		// Both addresses connect until the 2 s floor has passed: a second
		// run that ended after it (a loaded machine starting the helper)
		// proves nothing about the first address, so it is tried again.
		if time.Since(learned) >= 2*time.Second && try < 5 {
			t.Logf("try %d: the second query ended %v after the first: again", try, time.Since(learned))
			w.up.Set("svc.test", "svc.test. 1 IN A 10.1.2.3")
			time.Sleep(3 * time.Second) // both learned addresses expire
			continue
		}
		expect(t, got, "NOERROR 10.1.2.3", "NOERROR 10.1.2.4", "0", "0")
		break
	}
	// Floor and ceiling are 2 s and the janitor ticks every second: both
	// go between 2 and 3 s after they were learned. Polled, so that a
	// loaded machine only makes the test slower, never wrong.
	for {
		c := w.run(true, "connect "+w.svc("10.1.2.3"), "connect "+w.svc("10.1.2.4"))
		if c[0] == "1" && c[1] == "1" {
			break
		}
		if time.Since(learned) > 15*time.Second {
			t.Fatalf("the learned addresses still connect %v after a 2 s TTL: %q", time.Since(learned), c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(learned); d < 2*time.Second {
		t.Errorf("the learned addresses stopped after %v, before the 2 s floor", d)
	}
	expect(t, w.run(true, "q udp 10.53.0.1 svc.test", "connect "+w.svc("10.1.2.4")), "NOERROR 10.1.2.4", "0")
}

func drain(ch <-chan events.Event) []events.Event {
	var out []events.Event
	for {
		select {
		case ev := <-ch:
			out = append(out, ev)
		case <-time.After(200 * time.Millisecond):
			return out
		}
	}
}

// TestKernelRefusalNamesProcess: the events of refused queries name the
// sandbox process that asked, over UDP (connected, unconnected, IPv6) and
// TCP, and not another process of the sandbox.
func TestKernelRefusalNamesProcess(t *testing.T) {
	w := newWorld(t, policy.DNS{}, "svc.test")
	if err := w.p.OwnerLookup(); err != nil {
		t.Fatal(err)
	}
	// A bystander in the sandbox, there first: a search that took any
	// process of the cgroup would name it.
	by, reaped := testcgroup.StartIn(t, w.g, "sleep", "60")
	t.Cleanup(func() { by.Process.Kill(); <-reaped })

	names := []string{"udp.exfil.attacker.test", "tcp.exfil.attacker.test", "udp6.exfil.attacker.test", "sendto.exfil.attacker.test"}
	got := w.run(true, "who", "q udp 10.53.0.1 "+names[0], "q tcp 10.53.0.1 "+names[1],
		"q udp 2001:db8::53 "+names[2], "sendto 10.53.0.1 "+names[3])
	expect(t, got[1:], "REFUSED", "REFUSED", "REFUSED", "REFUSED")
	pid, comm, _ := strings.Cut(got[0], " ")
	tgid, err := strconv.Atoi(pid)
	if err != nil || tgid == by.Process.Pid {
		t.Fatalf("helper says %q", got[0])
	}
	seen := map[string]bool{}
	for _, ev := range drain(w.evs) {
		if ev.Op != events.OpDNS {
			continue
		}
		seen[ev.Domain] = true
		if ev.TGID != uint32(tgid) || ev.Comm != comm || ev.UID != uint32(os.Getuid()) || ev.PID != 0 {
			t.Errorf("%s: tgid %d comm %q uid %d pid %d, want %d %q %d 0", ev.Domain, ev.TGID, ev.Comm, ev.UID, ev.PID, tgid, comm, os.Getuid())
		}
	}
	for _, n := range names {
		if !seen[n] {
			t.Errorf("no event for %s", n)
		}
	}
	st := w.p.Stats()
	if st.OwnersFound != uint64(len(names)) || st.OwnersMissed != 0 {
		t.Errorf("stats: %d found, %d missed, want %d, 0", st.OwnersFound, st.OwnersMissed, len(names))
	}
	t.Logf("%d owner lookups (2 processes in the sandbox) took %s, %s each", st.OwnersFound+st.OwnersMissed,
		st.OwnerTime, st.OwnerTime/time.Duration(max(st.OwnersFound+st.OwnersMissed, 1)))
}
