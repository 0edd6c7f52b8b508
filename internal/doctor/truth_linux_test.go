package doctor

import (
	"strings"
	"testing"
)

// With systemd, the controllers move to cgroup v2 through its parameter.
func TestCgroupFixWithSystemd(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/self/mountinfo":                      mountinfoHybrid,
		"sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n",
		"run/systemd/system/x":                     "",
	})
	r := Run(Options{Root: root, Release: "6.18.0-test", Euid: 0})
	if c := find(t, r, "cgroup2"); !strings.Contains(c.Fix, "systemd.unified_cgroup_hierarchy=1") {
		t.Errorf("cgroup2 with systemd: %+v", c)
	}
}

// Without root, a running agent is the proof of what enforces: doctor must
// not claim BPF LSM when the agent uses fanotify, nor ask for sudo when the
// agent serves this user.
func TestNotRootAsksTheAgent(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"sys/kernel/btf/vmlinux":           "x",
		"sys/kernel/security/lsm":          "lockdown,capability,landlock,bpf\n",
		"proc/self/mountinfo":              "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
		"sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n",
	})
	never := func() error { t.Error("a probe ran without root"); return nil }
	opts := Options{Root: root, Release: "6.18.0-test", Euid: 1000, ProbeLSM: never, ProbeFanotify: never, ProbeSockAddr: never}

	r := Run(opts)
	if strings.Contains(r.Summary, "ready: BPF LSM") || !strings.Contains(r.Summary, "not proven without root") {
		t.Errorf("no agent, not root: summary %q", r.Summary)
	}

	opts.Agent = &Agent{Socket: "/run/aigate/aigate.sock", PID: 42, Backend: BackendFanotify}
	r = Run(opts)
	if r.Backend != BackendFanotify || !strings.Contains(r.Summary, "running agent (pid 42) enforces with the fanotify backend") {
		t.Errorf("agent on fanotify: backend %q, summary %q", r.Backend, r.Summary)
	}
	if c := find(t, r, "privileges"); c.Status != OK || strings.Contains(c.Fix+c.Detail, "sudo") {
		t.Errorf("privileges with an agent serving the user: %+v", c)
	}
	if c := find(t, r, "bpffs"); c.Status != Skip || c.Fix != "" {
		t.Errorf("bpffs with a fanotify agent: %+v", c)
	}

	opts.Agent = &Agent{Socket: "/run/aigate/aigate.sock", Denied: true}
	r = Run(opts)
	if c := find(t, r, "privileges"); c.Status != Warn || !strings.Contains(c.Fix, "usermod -aG aigate") {
		t.Errorf("privileges when the socket refuses the user: %+v", c)
	}
}

// Root, BPF LSM refused, fanotify proven: auto already falls back, and the
// report says nothing needs doing.
func TestFallbackNeedsNothing(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"sys/kernel/btf/vmlinux":           "x",
		"sys/kernel/security/lsm":          "lockdown,capability,landlock,bpf\n",
		"proc/self/mountinfo":              "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
		"sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n",
	})
	r := Run(Options{
		Root: root, Release: "6.18.0-test", Euid: 0,
		ProbeLSM:      func() error { return &ProbeError{Reason: "refused"} },
		ProbeFanotify: func() error { return nil },
		ProbeSockAddr: func() error { return nil },
	})
	if r.Backend != BackendFanotify || !strings.Contains(r.Summary, "nothing needs doing") {
		t.Errorf("backend %q, summary %q", r.Backend, r.Summary)
	}
	if c := find(t, r, "bpffs"); c.Status != Skip {
		t.Errorf("bpffs for a backend that does not pin: %+v", c)
	}
}
