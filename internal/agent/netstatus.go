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

// unixSockets says how the backend confines unix-socket connections. A
// backend with an egress part runs loader's network object, which confines
// them by socket name whenever the kernel has the cgroup unix hooks, for
// both file backends; another backend (a test's fake) does not say.
func (a *Agent) unixSockets() string {
	if _, ok := a.be.(netStatuser); !ok {
		return ""
	}
	return loader.UnixSocketEnforcement()
}
