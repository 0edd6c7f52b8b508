//go:build linux

package egress

import "github.com/aigate-dev/aigate/internal/policy"

// Mode is how a sandbox's allowed domains become allowed addresses; status
// shows it, because the two modes do not protect equally.
type Mode string

const (
	// ModeNone: the policy allows every destination (net: allow), so there
	// is nothing to learn; its deny entries still apply.
	ModeNone Mode = "none"
	// ModeProxy: the sandbox's DNS is steered to its own proxy, which
	// refuses names the policy does not allow and allows the addresses it
	// answers for the names it does, for their TTL.
	ModeProxy Mode = "dns proxy"
	// ModeResolve: the proxy could not run; exact allowed names are
	// resolved by aigate every ResolveEvery. Wildcards match nothing, and
	// the sandbox's DNS queries are ordinary destinations (a resolver on
	// an allowed address, such as a loopback stub, answers any name).
	ModeResolve Mode = "periodic resolve"
)

// plan says whether sandbox traffic to port 53 should be steered to a
// proxy, and the policy the proxy answers by.
//
// A proxy runs for every net: deny policy, also without allowed domains:
// with allow_loopback: all a local resolver stub (127.0.0.53) is an allowed
// destination, and it would carry data out in query names for any name.
// In audit mode nothing may be refused, so the proxy answers every name
// (it still learns the allowed ones, and names the others' addresses for
// the audit events of the connections that follow).
func plan(np policy.NetPolicy, audit bool) (proxy bool, answer policy.NetPolicy) {
	if np.Mode != policy.NetDeny {
		return false, np
	}
	if audit {
		np.Mode = policy.NetAllow
	}
	return true, np
}
