//go:build linux

package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/egress"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// The kernel tests re-execute the test binary inside the sandbox cgroup;
// the helper runs the operations in helperEnv (";"-separated) and prints
// one result line each.
const helperEnv = "AIGATE_BACKEND_HELPER"

func init() { testutil.HelperOps(helperEnv, helperOp) }

// helperOp runs one of:
//
//	connect ADDR:PORT    TCP connect: prints the errno (0: connected)
//	q RESOLVER NAME      ask RESOLVER:53 over UDP for NAME's A record:
//	                     prints the rcode name and the first address
//	open PATH            open for reading: prints the errno
func helperOp(args []string) string {
	switch {
	case len(args) == 2 && args[0] == "connect":
		ap, err := netip.ParseAddrPort(args[1])
		if err != nil {
			return err.Error()
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err.Error()
		}
		defer unix.Close(fd)
		return errno(unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}))
	case len(args) == 3 && args[0] == "q":
		c := &mdns.Client{Net: "udp", Timeout: 3 * time.Second}
		r, _, err := c.Exchange(new(mdns.Msg).SetQuestion(mdns.Fqdn(args[2]), mdns.TypeA), net.JoinHostPort(args[1], "53"))
		if err != nil {
			return "error"
		}
		out := mdns.RcodeToString[r.Rcode]
		for _, rr := range r.Answer {
			if a, ok := rr.(*mdns.A); ok {
				return out + " " + a.A.String()
			}
		}
		return out
	case len(args) == 2 && args[0] == "open":
		fd, err := unix.Open(args[1], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return errno(err)
	}
	return "bad-op"
}

func errno(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return strconv.Itoa(int(en))
	}
	if err != nil {
		return err.Error()
	}
	return "0"
}

// startUpstream is a fake resolver on the host's loopback, where the proxy
// (outside every sandbox) reaches it: svc.test is 127.0.0.7 and
// exfil.attacker.test 127.0.0.8.
func startUpstream(t *testing.T) *testutil.FakeDNS {
	t.Helper()
	up := testutil.StartFakeDNS(t)
	up.Set("svc.test", "svc.test. 300 IN A 127.0.0.7")
	up.Set("exfil.attacker.test", "exfil.attacker.test. 300 IN A 127.0.0.8")
	return up
}

// world is one kernel test: a composite backend, a sandbox cgroup with a
// policy that allows svc.test and nothing else on the network, a fake
// upstream and TCP services on 127.0.0.7 (svc.test) and 127.0.0.8.
type world struct {
	t      *testing.T
	b      enforce.Backend
	g      *cgroup.Group
	sb     *enforce.Sandbox
	secret string
	port   int
	evs    []events.Event
}

func requireCgroup(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
}

// newCgroup creates a sandbox cgroup that the test removes.
func newCgroup(t *testing.T) *cgroup.Group {
	t.Helper()
	g, err := cgroup.Create("aigate-test", fmt.Sprintf("backend-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
		_ = os.Remove(filepath.Dir(g.Path)) // the shared parent, once empty
	})
	return g
}

func listen(t *testing.T, addr string, port int) int {
	t.Helper()
	l, err := net.Listen("tcp4", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	testutil.AcceptAll(t, l)
	return l.Addr().(*net.TCPAddr).Port
}

func newWorld(t *testing.T, b enforce.Backend) *world {
	t.Helper()
	w := &world{t: t, b: b}
	w.secret = filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(w.secret, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.port = listen(t, "127.0.0.7", 0)
	listen(t, "127.0.0.8", w.port)
	p := &policy.Policy{
		Net:      policy.NetDeny,
		AllowNet: []policy.Endpoint{{Raw: "svc.test"}},
		DenyRead: []policy.PathRule{{Pattern: w.secret}},
	}
	c, err := policy.Compile(p, policy.Env{Home: t.TempDir(), ProjectRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	w.g = newCgroup(t)
	w.sb = &enforce.Sandbox{ID: 11, Name: "egress-test", CgroupID: w.g.ID, CgroupPath: w.g.Path, Policy: c, Mode: policy.ModeEnforce}
	return w
}

// run executes ops in the sandbox.
func (w *world) run(ops ...string) []string {
	w.t.Helper()
	self, err := os.Executable()
	if err != nil {
		w.t.Fatal(err)
	}
	fd, err := w.g.OpenFD()
	if err != nil {
		w.t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(ops, ";"))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
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

// event waits for an event that match accepts, keeping the others.
func (w *world) event(what string, match func(events.Event) bool) events.Event {
	w.t.Helper()
	for _, ev := range w.evs {
		if match(ev) {
			return ev
		}
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-w.b.Events():
			w.evs = append(w.evs, ev)
			if match(ev) {
				return ev
			}
		case <-timeout:
			w.t.Fatalf("no %s event; got %+v", what, w.evs)
		}
	}
}

func (w *world) count(op events.Op) uint64 {
	w.t.Helper()
	st, err := w.b.Stats()
	if err != nil {
		w.t.Fatal(err)
	}
	var n uint64
	for _, c := range st.Violations {
		if c.Op == op && !c.Audit {
			n += c.Value
		}
	}
	return n
}

// checkEnforced runs the sandboxed operations every composition must get
// right, and checks their events and counters.
func checkEnforced(t *testing.T, w *world, backend string) {
	if err := w.b.Add(context.Background(), w.sb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.b.Remove(w.sb.ID) })
	if st, ok := w.b.(*Composite).NetStatus(w.sb.ID); !ok || st.Mode != egress.ModeProxy {
		t.Fatalf("egress status %+v, want the DNS proxy", st)
	}
	svc := func(a string) string { return net.JoinHostPort(a, strconv.Itoa(w.port)) }
	eperm := strconv.Itoa(int(unix.EPERM))
	got := w.run(
		"connect "+svc("127.0.0.7"),        // not learned yet
		"q 192.0.2.53 svc.test",            // any resolver address is steered to the proxy
		"connect "+svc("127.0.0.7"),        // learned from the answer
		"q 192.0.2.53 exfil.attacker.test", // refused, never forwarded
		"connect "+svc("127.0.0.8"),        // never learned
		"open "+w.secret,                   // the file side of the same Add
	)
	want := []string{eperm, "NOERROR 127.0.0.7", "0", "REFUSED", eperm, eperm}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("op %d: %q, want %q", i, got[i], want[i])
		}
	}
	ev := w.event("connect", func(ev events.Event) bool {
		return ev.Op == events.OpConnect && ev.Addr.String() == svc("127.0.0.8")
	})
	if ev.Kind != events.KindNet || ev.Backend != backend || ev.CgroupID != w.g.ID {
		t.Errorf("connect event %+v, want backend %s in sandbox %s", ev, backend, w.sb.Name)
	}
	// Events come as the kernel reported them; the agent names a
	// connection's domain by asking the backend.
	dn := w.b.(enforce.DomainNamer)
	if d := dn.DomainOf(w.g.ID, netip.MustParseAddr("127.0.0.7")); d != "svc.test" {
		t.Errorf("domain of the learned address: %q, want svc.test", d)
	}
	if d := dn.DomainOf(w.g.ID, netip.MustParseAddr("127.0.0.8")); d != "" {
		t.Errorf("domain of a never-learned address: %q", d)
	}
	ev = w.event("dns", func(ev events.Event) bool { return ev.Op == events.OpDNS })
	if ev.Domain != "exfil.attacker.test" || ev.CgroupID != w.g.ID || ev.Rule != uint32(w.sb.Policy.Net.DenyRule) {
		t.Errorf("dns event %+v", ev)
	}
	w.event("read", func(ev events.Event) bool { return ev.Op == events.OpRead && ev.Path == w.secret })
	if n := w.count(events.OpConnect); n != 2 {
		t.Errorf("connect counter %d, want 2", n)
	}
	if n := w.count(events.OpDNS); n != 1 {
		t.Errorf("dns counter %d, want 1", n)
	}
}

// openFanotifyComposite opens what Open("fanotify") returns, with the fake
// upstream, or skips where fanotify or sock_addr programs are missing.
func openFanotifyComposite(t *testing.T, up string) *Composite {
	t.Helper()
	requireCgroup(t)
	b, err := Default.OpenFanotify(Options{Home: t.TempDir(), ProjectRoot: t.TempDir(), DNSUpstreams: []string{up}})
	if err != nil {
		var ve *ebpf.VerifierError
		if !errors.As(err, &ve) && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)) {
			testutil.SkipUnlessKernel(t, err.Error())
		}
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b.(*Composite)
}

// TestFanotifyEgress: with the fanotify backend, a sandboxed child's
// denied connect and denied DNS name are refused, reported and counted,
// and an allowed name resolves through the proxy and then connects.
func TestFanotifyEgress(t *testing.T) {
	up := startUpstream(t)
	c := openFanotifyComposite(t, up.Addr)
	checkEnforced(t, newWorld(t, c), "fanotify")
}

// attached lists the programs attached to the cgroup for each network
// attach type.
// detached waits until no program is attached to the cgroup at path, for
// at most 5 s, and returns how many are left. The fanotify guard holds
// copies of a sandbox's network links until the sandbox is dead; it drops
// them when told, a message later, so detaching trails Remove by that much.
func detached(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := attached(t, path)
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func attached(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for _, typ := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect,
		ebpf.AttachCGroupUDP4Sendmsg, ebpf.AttachCGroupUDP6Sendmsg, ebpf.AttachCGroupUDP4Recvmsg,
		ebpf.AttachCGroupUDP6Recvmsg, ebpf.AttachCGroupInetSockCreate, ebpf.AttachCgroupInetSockRelease} {
		r, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: typ})
		if err != nil {
			t.Fatalf("query %s: %v", typ, err)
		}
		n += len(r.Programs)
	}
	return n
}

// TestFanotifyAddRollback: when the file side refuses a sandbox after the
// network side attached its programs, Add detaches them again and frees
// the id; a later Add of the same sandbox works. An invalid cgroup path
// leaves nothing either.
func TestFanotifyAddRollback(t *testing.T) {
	up := testutil.StartFakeDNS(t)
	c := openFanotifyComposite(t, up.Addr)
	w := newWorld(t, c)

	// The file side already has id 11 (through another cgroup), so its Add
	// fails after egress attached to w's cgroup.
	other := newCgroup(t)
	taken := *w.sb
	taken.CgroupID, taken.CgroupPath = other.ID, other.Path
	if err := c.files.Add(context.Background(), &taken); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(context.Background(), w.sb); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("Add with a taken id: %v", err)
	}
	if n := detached(t, w.g.Path); n != 0 {
		t.Fatalf("%d programs left attached after a failed Add", n)
	}
	if _, ok := c.NetStatus(w.sb.ID); ok {
		t.Fatal("egress still lists the sandbox")
	}
	if err := c.files.Remove(w.sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(context.Background(), w.sb); err != nil {
		t.Fatalf("Add after the rollback: %v", err)
	}
	if n := attached(t, w.g.Path); n != 8 {
		t.Fatalf("%d programs attached, want 8", n)
	}
	if err := c.Remove(w.sb.ID); err != nil {
		t.Fatal(err)
	}
	if n := detached(t, w.g.Path); n != 0 {
		t.Fatalf("%d programs left attached after Remove", n)
	}

	bad := *w.sb
	bad.ID, bad.CgroupPath = 12, filepath.Join(filepath.Dir(w.g.Path), "no-such-cgroup")
	if err := c.Add(context.Background(), &bad); err == nil {
		t.Fatal("Add of a missing cgroup succeeded")
	}
	if _, ok := c.NetStatus(bad.ID); ok {
		t.Fatal("egress lists the failed sandbox")
	}
	bad.CgroupPath = w.g.Path
	bad.CgroupID = w.g.ID
	if err := c.Add(context.Background(), &bad); err != nil {
		t.Fatalf("id 12 not released: %v", err)
	}
	_ = c.Remove(bad.ID)
}

// TestLSMEgress: with BPF LSM (run it with `go run ./vmtest --pkg
// ./internal/backend -- -test.v`), the network programs share the LSM's
// maps: the denied connect arrives through the LSM's ring buffer as an
// "lsm" event and is counted in the LSM's counters.
func TestLSMEgress(t *testing.T) {
	requireCgroup(t)
	if err := loader.ProbeLSM(); err != nil {
		testutil.SkipUnlessLSM(t, err.Error())
	}
	up := startUpstream(t)
	b, err := Default.OpenLSM(Options{DNSUpstreams: []string{up.Addr}})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if b.Name() != "lsm" {
		t.Fatalf("backend %s", b.Name())
	}
	checkEnforced(t, newWorld(t, b), "lsm")
}

// TestFanotifyAddRemoveCost logs what bringing one sandbox's complete
// policy up and down costs (fanotify marks, eight sock_addr programs, a DNS
// proxy on four sockets), and that repeating it leaks nothing attached.
func TestFanotifyAddRemoveCost(t *testing.T) {
	up := testutil.StartFakeDNS(t)
	c := openFanotifyComposite(t, up.Addr)
	w := newWorld(t, c)
	const n = 20
	var add, remove time.Duration
	for range n {
		t0 := time.Now()
		if err := c.Add(context.Background(), w.sb); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if err := c.Remove(w.sb.ID); err != nil {
			t.Fatal(err)
		}
		add, remove = add+t1.Sub(t0), remove+time.Since(t1)
	}
	if k := detached(t, w.g.Path); k != 0 {
		t.Fatalf("%d programs attached after %d Add/Remove cycles", k, n)
	}
	t.Logf("Add %v, Remove %v (mean of %d)", add/n, remove/n, n)
}
