//go:build linux

package dns

import (
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestKernelProxyAnswersOnlyItsSandbox: a client outside the proxy's
// sandbox (here the test itself, which no kernel program restricts, as a
// process of another sandbox would be if the kernel's refusal were gone)
// that reaches the proxy's port directly gets REFUSED for a name the
// sandbox may resolve, over UDP and TCP, and the upstream is never asked;
// the sandbox's own processes are answered.
func TestKernelProxyAnswersOnlyItsSandbox(t *testing.T) {
	w := newWorld(t, policy.DNS{}, "svc.test")
	w.up.Set("svc.test", "svc.test. 300 IN A 10.1.2.3")
	expect(t, w.run(true, "q udp 10.53.0.1 svc.test"), "NOERROR 10.1.2.3")
	before := w.up.Queries()

	for _, network := range []string{"udp", "tcp"} {
		var (
			r   *mdns.Msg
			err error
		)
		w.ns.Do(func() {
			c := &mdns.Client{Net: network, Timeout: 3 * time.Second}
			r, _, err = c.Exchange(new(mdns.Msg).SetQuestion("svc.test.", mdns.TypeA),
				netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), w.p.Port()).String())
		})
		if err != nil || r.Rcode != mdns.RcodeRefused {
			t.Errorf("%s query from outside the sandbox: %v, %v; want REFUSED", network, r, err)
		}
	}
	if got := w.p.Stats().Strangers; got != 2 {
		t.Errorf("Strangers = %d, want 2", got)
	}
	if w.up.Queries() != before {
		t.Errorf("the upstream was asked for a stranger")
	}
	expect(t, w.run(true, "q tcp 10.53.0.1 svc.test"), "NOERROR 10.1.2.3")
}
