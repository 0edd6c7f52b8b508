//go:build linux

package dns

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/testutil/testcgroup"
)

// holderProc is a helper process in a test cgroup holding descriptors and,
// maybe, a UDP socket connected to the test's "proxy".
type holderProc struct {
	pid  int
	port uint16 // of its UDP socket, 0 for none
}

// startHolder starts the "hold" helper op in g: nfds extra descriptors,
// and a UDP socket connected to srv unless srv is the zero value. It ends
// when the test does.
func startHolder(t testing.TB, g *cgroup.Group, srv netip.AddrPort, nfds int) holderProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr := "-"
	if srv.IsValid() {
		addr = srv.String()
	}
	fd, err := g.OpenFD()
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=hold %s %d", helperEnv, addr, nfds))
	h := testutil.StartHeld(t, cmd, int(fd.Fd()))
	line, err := bufio.NewReader(h.Out).ReadString('\n')
	port, perr := strconv.ParseUint(strings.TrimSpace(line), 10, 16)
	if err != nil || perr != nil {
		t.Fatalf("holder printed %q: %v", line, err)
	}
	return holderProc{pid: cmd.Process.Pid, port: uint16(port)}
}

// ownerWorld is a sandbox cgroup and a UDP socket standing for the proxy,
// on the host's loopback (no kernel programs: the test's clients send to
// it directly).
type ownerWorld struct {
	g   *cgroup.Group
	srv netip.AddrPort
	f   *ownerFinder
}

// newOwnerWorld makes the sandbox cgroup and a finder with the given
// budget: tests of what is found give it time, because -race and a loaded
// machine can make a lookup overrun DefaultOwnerBudget.
func newOwnerWorld(t testing.TB, budget time.Duration) *ownerWorld {
	parent, _ := testcgroup.Parent(t, "aigate-dns")
	g, err := cgroup.Create(parent, "sb")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	f, err := newOwnerFinder(g.Path, pc, budget)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.close() })
	return &ownerWorld{g: g, srv: pc.LocalAddr().(*net.UDPAddr).AddrPort(), f: f}
}

func (w *ownerWorld) peer(port uint16) peer {
	return peer{client: netip.AddrPortFrom(w.srv.Addr(), port), proxy: w.srv}
}

// TestOwnerFind: the holder of the socket is found among the sandbox's
// processes (here in a cgroup below the sandbox's), not a bystander; a
// socket nobody in the sandbox holds names nobody.
func TestOwnerFind(t *testing.T) {
	w := newOwnerWorld(t, time.Second)
	startHolder(t, w.g, netip.AddrPort{}, 50) // a bystander
	inner, err := cgroup.Create(strings.TrimPrefix(w.g.Path, mustMount(t)), "inner")
	if err != nil {
		t.Fatal(err)
	}
	h := startHolder(t, inner, w.srv, 5)
	start := time.Now()
	o, err := w.f.find(w.peer(h.port))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if o.tgid != uint32(h.pid) || o.comm != "dns.test" || o.uid != uint32(os.Getuid()) {
		t.Errorf("found %+v, want tgid %d comm dns.test uid %d", o, h.pid, os.Getuid())
	}
	t.Logf("found the holder (second of 2 processes, second cgroup) in %s", took)

	// A socket of this test process, outside the sandbox.
	c, err := net.Dial("udp4", w.srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if o, err := w.f.find(w.peer(uint16(c.LocalAddr().(*net.UDPAddr).Port))); err == nil || errors.Is(err, errBudget) {
		t.Errorf("socket outside the sandbox: %+v, %v", o, err)
	}
	// No socket at all.
	c.Close()
	if _, err := w.f.find(w.peer(uint16(c.LocalAddr().(*net.UDPAddr).Port))); !errors.Is(err, errNoSocket) {
		t.Errorf("closed socket: %v, want %v", err, errNoSocket)
	}
}

func mustMount(t testing.TB) string {
	root, err := cgroup.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestOwnerBounded: a sandbox process with more descriptors than one
// lookup may read hides the holder behind it; the lookup gives up (it does
// not read them all), and once lookups took their share of a second the
// next ones return at once.
func TestOwnerBounded(t *testing.T) {
	w := newOwnerWorld(t, DefaultOwnerBudget)
	startHolder(t, w.g, netip.AddrPort{}, ownerMaxFDs+1000)
	inner, err := cgroup.Create(strings.TrimPrefix(w.g.Path, mustMount(t)), "inner")
	if err != nil {
		t.Fatal(err)
	}
	h := startHolder(t, inner, w.srv, 0)
	var shared bool
	var n int
	var took time.Duration
	for n = 1; n <= 200 && !shared; n++ {
		start := time.Now()
		_, err := w.f.find(w.peer(h.port))
		d := time.Since(start)
		if !errors.Is(err, errBudget) {
			t.Fatalf("lookup %d behind %d descriptors: %v, want the budget spent", n, ownerMaxFDs+1000, err)
		}
		if n == 1 {
			took = d
		}
		shared = strings.Contains(err.Error(), "in the last second")
	}
	if !shared {
		t.Errorf("200 spent lookups never hit the share of %s per second", ownerShare*w.f.budget)
	}
	t.Logf("a lookup behind %d descriptors gave up after %s; lookup %d was refused for the share", ownerMaxFDs+1000, took, n-1)
}

// BenchmarkOwnerLookup is the cost of naming the process of one refused
// query: sock_diag, reading the sandbox's cgroup.procs, the descriptors of
// its processes up to the holder's, and the holder's cgroup, comm and
// status. The holder is either the newest process (highest pid: scanned
// first) or the oldest (scanned after every bystander's descriptors).
func BenchmarkOwnerLookup(b *testing.B) {
	for _, c := range []struct {
		procs, fds int
		oldest     bool
	}{{0, 0, false}, {10, 100, false}, {10, 100, true}, {50, 100, true}} {
		b.Run(fmt.Sprintf("bystanders=%d/fds=%d/holder-oldest=%v", c.procs, c.fds, c.oldest), func(b *testing.B) {
			w := newOwnerWorld(b, time.Second)
			var h holderProc
			if c.oldest {
				h = startHolder(b, w.g, w.srv, 0)
			}
			for range c.procs {
				startHolder(b, w.g, netip.AddrPort{}, c.fds)
			}
			if !c.oldest {
				h = startHolder(b, w.g, w.srv, 0)
			}
			p := w.peer(h.port)
			for b.Loop() {
				o, err := w.f.lookup(p, time.Now().Add(time.Second))
				if err != nil || o.tgid != uint32(h.pid) {
					b.Fatalf("%+v, %v", o, err)
				}
			}
		})
	}
}
