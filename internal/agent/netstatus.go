//go:build linux

package agent

import (
	"github.com/aigate-dev/aigate/internal/egress"
	"github.com/aigate-dev/aigate/internal/enforce"
)

// netStatuser is implemented by a backend with an egress part
// (backend.Composite): it says per sandbox whether a DNS proxy or periodic
// resolution keeps its allowed domains, which status shows because the two
// do not protect equally.
type netStatuser interface {
	NetStatus(id uint32) (egress.Status, bool)
}

// unixSockets says how the backend confines unix-socket connections, as
// the backend declares it (enforce.UnixSockets); a backend that does not
// say (a test's fake without an egress part) gets "".
func (a *Agent) unixSockets() string {
	if u, ok := a.be.(enforce.UnixSockets); ok {
		return u.UnixSockets()
	}
	return ""
}

// refusesUserns tells whether the backend refuses new user namespaces in
// the kernel (enforce.UserNamespaces); the exec helper's seccomp filter
// does where it does not.
func refusesUserns(be enforce.Backend) bool {
	u, ok := be.(enforce.UserNamespaces)
	return ok && u.RefusesUserNamespaces()
}
