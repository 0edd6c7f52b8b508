package cli

import (
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/doctor"
	"github.com/aigate-dev/aigate/internal/policy"
)

// What status says a run would use, from the config's choice, doctor's
// verdicts and the agent.
func TestEnforcementChoice(t *testing.T) {
	// This kind of machine: BPF LSM refused, fanotify and sock_addr work.
	here := &doctor.Report{
		Backend: doctor.BackendFanotify,
		Verdicts: []doctor.Verdict{
			{Name: "bpf-lsm", State: doctor.NotUsable, Detail: "BPF_PROG_LOAD returned EPERM"},
			{Name: "unix-sockets", State: doctor.Confined, Detail: "cgroup connect_unix"},
		},
		Backends: []doctor.BackendInfo{{Name: "lsm", State: doctor.NotUsable}, {Name: "fanotify", State: doctor.Usable}},
	}
	unproven := &doctor.Report{
		Backend:  doctor.BackendLSM,
		Verdicts: []doctor.Verdict{{Name: "unix-sockets", State: doctor.NeedsRoot}},
		Backends: []doctor.BackendInfo{{Name: "lsm", State: doctor.NeedsRoot}, {Name: "fanotify", State: doctor.NeedsRoot}},
	}
	agentFan := &StatusAgent{Backend: "fanotify", Unix: "by the agent"}
	for _, tc := range []struct {
		name        string
		choice      policy.BackendChoice
		kernel      *doctor.Report
		agent       *StatusAgent
		backend     string
		note, unixS string
	}{
		{"auto falls back", policy.BackendAuto, here, nil, "fanotify", "BPF LSM not usable: BPF_PROG_LOAD returned EPERM", "cgroup connect_unix"},
		{"lsm asked, refused", policy.BackendLSM, here, nil, "", "aigate run would refuse", "cgroup connect_unix"},
		{"fanotify asked", policy.BackendFanotify, here, nil, "fanotify", "", "cgroup connect_unix"},
		{"not root", policy.BackendAuto, unproven, nil, "lsm", "not proven", ""},
		{"agent", policy.BackendAuto, here, agentFan, "fanotify", "", "by the agent"},
		{"agent mismatch", policy.BackendLSM, here, agentFan, "fanotify", "the running agent enforces with fanotify: aigate run would refuse", "by the agent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := enforcement(tc.choice, tc.kernel, tc.agent, nil, "")
			if e.Backend != tc.backend || e.Unix != tc.unixS || e.Sandboxes == nil {
				t.Errorf("backend %q unix %q sandboxes %v; want %q %q []", e.Backend, e.Unix, e.Sandboxes, tc.backend, tc.unixS)
			}
			if tc.note == "" && e.Note != "" || !strings.Contains(e.Note, tc.note) {
				t.Errorf("note %q, want %q", e.Note, tc.note)
			}
		})
	}
}
