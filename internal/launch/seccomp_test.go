//go:build linux

package launch

import (
	"testing"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/seccomp"
)

// TestSessionSeccomp: the exec helper's filter refuses what no BPF LSM hook
// refuses for the sandbox, and nothing in audit mode.
func TestSessionSeccomp(t *testing.T) {
	for _, c := range []struct {
		name string
		info api.SandboxInfo
		want seccomp.Refuse
	}{
		{"fanotify defaults", api.SandboxInfo{Backend: "fanotify", Mode: policy.ModeEnforce},
			seccomp.Refuse{Families: true, Userns: true, IOUring: true, SharedFiles: true}},
		{"fanotify, both keys", api.SandboxInfo{Backend: "fanotify", Mode: policy.ModeEnforce, Userns: true, IOUring: true},
			seccomp.Refuse{Families: true, SharedFiles: true}},
		{"fanotify audit", api.SandboxInfo{Backend: "fanotify", Mode: policy.ModeAudit}, seccomp.Refuse{}},
		{"lsm with the hook", api.SandboxInfo{Backend: "lsm", Mode: policy.ModeEnforce, UsernsHook: true}, seccomp.Refuse{}},
		{"lsm before 6.1", api.SandboxInfo{Backend: "lsm", Mode: policy.ModeEnforce}, seccomp.Refuse{Userns: true}},
		{"lsm before 6.1, allow_userns", api.SandboxInfo{Backend: "lsm", Mode: policy.ModeEnforce, Userns: true}, seccomp.Refuse{}},
	} {
		s := &api.Session{Sandbox: c.info}
		if got := refusals(s); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
