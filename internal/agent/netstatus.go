//go:build linux

package agent

import (
	"github.com/aigate-dev/aigate/internal/egress"
	"github.com/aigate-dev/aigate/internal/loader"
)

// netStatuser is implemented by a backend with an egress part
// (backend.Composite): it says per sandbox whether a DNS proxy or periodic
// resolution keeps its allowed domains, which status shows because the two
// do not protect equally.
type netStatuser interface {
	NetStatus(id uint32) (egress.Status, bool)
}

// unixSockets says how the backend confines unix-socket connections. The
// BPF-LSM backend checks the peer socket itself (unix_stream_connect,
// unix_may_send); otherwise a backend with an egress part runs loader's
// network object, which confines them by socket name whenever the kernel
// has the cgroup unix hooks. Another backend (a test's fake) does not say.
func (a *Agent) unixSockets() string {
	if _, ok := a.be.(netStatuser); !ok {
		return ""
	}
	if a.be.Name() == "lsm" {
		return "BPF LSM unix_stream_connect/unix_may_send: by peer (a socket created in the same sandbox, or under an allow_unix path)"
	}
	return loader.UnixSocketEnforcement()
}
