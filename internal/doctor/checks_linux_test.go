package doctor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot builds a /sys, /proc and /boot tree for Run.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const mountinfoV2 = `22 1 0:21 / /sys rw - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods
31 22 0:27 / /sys/fs/bpf rw - bpf bpf rw
`

const mountinfoHybrid = `22 1 0:21 / /sys rw - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw
32 30 0:28 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`

func find(t *testing.T, r *Report, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return Check{}
}

func TestRunHealthy(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"sys/kernel/btf/vmlinux":           "x",
		"sys/kernel/security/lsm":          "lockdown,capability,landlock,bpf\n",
		"proc/self/mountinfo":              mountinfoV2,
		"sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
		"boot/config-6.1.0-test":           "CONFIG_BPF_LSM=y\nCONFIG_FANOTIFY_ACCESS_PERMISSIONS=y\nCONFIG_IMA=y\n",
		"proc/kallsyms":                    kallsymsListed,
	})
	probed := 0
	r := Run(Options{
		Root: root, Release: "6.1.0-test", Euid: 0,
		ProbeLSM:      func() error { probed++; return nil },
		ProbeFanotify: func() error { probed++; return nil },
		ProbeSockAddr: func() error { probed++; return nil },
		ProbeUnix:     func() (string, error) { probed++; return "by socket name", nil },
		LandlockABI:   func() int { return 7 },
	})
	for _, c := range r.Checks {
		if c.Status != OK {
			t.Errorf("%s: %s (%s)", c.Name, c.Status, c.Detail)
		}
	}
	if probed != 4 || r.Backend != BackendLSM || !r.Ready || r.Failed() {
		t.Errorf("probed=%v backend=%q ready=%v failed=%v", probed, r.Backend, r.Ready, r.Failed())
	}
	want := map[string]string{"bpf-lsm": Usable, "fanotify": Usable, "sock-addr": Usable, "unix-sockets": Confined}
	for _, v := range r.Verdicts {
		if v.State != want[v.Name] {
			t.Errorf("verdict %s = %s (%s), want %s", v.Name, v.State, v.Detail, want[v.Name])
		}
		delete(want, v.Name)
	}
	if len(want) != 0 {
		t.Errorf("no verdict for %v", want)
	}
	if len(r.Backends) != 2 || r.Backends[0].State != Usable || r.Backends[1].State != Usable || len(r.NeedRoot) != 0 {
		t.Errorf("backends %+v, need root %v", r.Backends, r.NeedRoot)
	}
}

func TestRunProblems(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"sys/kernel/security/lsm":                  "lockdown,capability,apparmor\n",
		"proc/cmdline":                             "BOOT_IMAGE=/vmlinuz root=/dev/sda1 lsm=lockdown,capability,apparmor quiet\n",
		"proc/self/mountinfo":                      mountinfoHybrid,
		"sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n",
	})
	r := Run(Options{Root: root, Release: "5.15.0-91-generic", Euid: 1000, ProbeLSM: func() error { t.Error("probe ran without root"); return nil }})

	btf := find(t, r, "btf")
	if btf.Status != Fail || !strings.Contains(btf.Fix, "CONFIG_DEBUG_INFO_BTF=y") {
		t.Errorf("btf: %+v", btf)
	}
	lsm := find(t, r, "bpf-lsm")
	for _, want := range []string{
		"lsm=lockdown,capability,apparmor,bpf",
		"sudo update-grub",
		`sudo grubby --update-kernel=ALL --args="lsm=lockdown,capability,apparmor,bpf"`,
		"already has lsm=lockdown,capability,apparmor",
	} {
		if lsm.Status != Fail || !strings.Contains(lsm.Fix, want) {
			t.Errorf("bpf-lsm fix lacks %q: %+v", want, lsm)
		}
	}
	if c := find(t, r, "bpf-lsm-load"); c.Status != Skip {
		t.Errorf("probe: %+v", c)
	}
	cg := find(t, r, "cgroup2")
	if cg.Status != Warn || !strings.Contains(cg.Detail, "/sys/fs/cgroup/unified") || !strings.Contains(cg.Detail, "memory, cpu, pids") {
		t.Errorf("cgroup2: %+v", cg)
	}
	// BPF LSM is not active, so fanotify runs, and it pins nothing.
	if c := find(t, r, "bpffs"); c.Status != Skip || !strings.Contains(c.Detail, "not needed") || c.Fix != "" {
		t.Errorf("bpffs: %+v", c)
	}
	// No systemd here: its boot parameter would do nothing.
	if !strings.Contains(cg.Fix, "cgroup_no_v1=memory,cpu,pids") {
		t.Errorf("cgroup2 fix without systemd: %q", cg.Fix)
	}
	if c := find(t, r, "privileges"); c.Status != Warn || !strings.Contains(c.Fix, "sudo aigate setup") {
		t.Errorf("privileges: %+v", c)
	}
	if r.Backend != BackendFanotify || !r.Ready || !r.Failed() {
		t.Errorf("backend=%q ready=%v failed=%v", r.Backend, r.Ready, r.Failed())
	}
}

func TestRunNotReady(t *testing.T) {
	root := fakeRoot(t, map[string]string{"proc/self/mountinfo": "22 1 0:21 / /sys rw - sysfs sysfs rw\n"})
	r := Run(Options{Root: root, Release: "4.19.0", Euid: 0, ProbeLSM: func() error { return errors.New("EPERM") }})
	if c := find(t, r, "kernel"); c.Status != Fail {
		t.Errorf("kernel: %+v", c)
	}
	if c := find(t, r, "cgroup2"); c.Status != Fail || !strings.Contains(c.Fix, "mount -t cgroup2") {
		t.Errorf("cgroup2: %+v", c)
	}
	if r.Ready || r.Backend != "" {
		t.Errorf("ready=%v backend=%q", r.Ready, r.Backend)
	}
}

func TestProbeFailure(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"sys/kernel/btf/vmlinux":  "x",
		"sys/kernel/security/lsm": "bpf",
		"proc/self/mountinfo":     mountinfoV2,
	})
	r := Run(Options{Root: root, Release: "6.18.0", Euid: 0, ProbeLSM: func() error { return errors.New("load: operation not permitted") }})
	if c := find(t, r, "bpf-lsm-load"); c.Status != Fail || !strings.Contains(c.Detail, "operation not permitted") {
		t.Errorf("probe: %+v", c)
	}
	if r.Backend != BackendFanotify {
		t.Errorf("backend %q, want the fanotify fallback", r.Backend)
	}
}

func TestHelpers(t *testing.T) {
	for rel, want := range map[string][2]int{"6.18.0-1-cloud-amd64": {6, 18}, "5.7": {5, 7}, "5.10rc1": {5, 10}} {
		ma, mi, ok := parseRelease(rel)
		if !ok || ma != want[0] || mi != want[1] {
			t.Errorf("parseRelease(%q) = %d.%d %v", rel, ma, mi, ok)
		}
	}
	if _, _, ok := parseRelease("garbage"); ok {
		t.Error("parseRelease(garbage) ok")
	}
}

func verdict(t *testing.T, r *Report, name string) Verdict {
	t.Helper()
	for _, v := range r.Verdicts {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no verdict %q in %+v", name, r.Verdicts)
	return Verdict{}
}

func healthyRoot(t *testing.T) string {
	return fakeRoot(t, map[string]string{
		"sys/kernel/btf/vmlinux":           "x",
		"sys/kernel/security/lsm":          "lockdown,capability,landlock,bpf\n",
		"proc/self/mountinfo":              mountinfoV2,
		"sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
		"boot/config-6.18.0-test":          "CONFIG_BPF_LSM=y\nCONFIG_FANOTIFY_ACCESS_PERMISSIONS=y\n",
	})
}

// Without root, the probes do not run, and the report says they need root
// instead of failing them.
func TestNotRootSaysWhatNeedsRoot(t *testing.T) {
	never := func() error { t.Error("a probe ran without root"); return nil }
	r := Run(Options{
		Root: healthyRoot(t), Release: "6.18.0-test", Euid: 1000,
		ProbeLSM: never, ProbeFanotify: never, ProbeSockAddr: never,
		ProbeUnix: func() (string, error) { t.Error("unix probe ran without root"); return "", nil },
	})
	for _, name := range []string{"bpf-lsm-load", "fanotify", "sock-addr", "unix-sockets"} {
		if c := find(t, r, name); c.Status != Skip || c.Fix != "sudo aigate doctor" {
			t.Errorf("%s: %+v, want a skip that says sudo", name, c)
		}
	}
	if got := strings.Join(r.NeedRoot, ","); got != "bpf-lsm-load,fanotify,sock-addr,unix-sockets" {
		t.Errorf("need root = %q", got)
	}
	for _, v := range r.Verdicts {
		if v.State != NeedsRoot {
			t.Errorf("verdict %s = %s, want %s", v.Name, v.State, NeedsRoot)
		}
	}
	if r.Failed() {
		t.Error("checks that could not run must not fail")
	}
}

// The LSM probe's typed error gives the verdict its reason and its fix;
// with LSM refused, auto picks fanotify.
func TestLSMRefusedPicksFanotify(t *testing.T) {
	r := Run(Options{
		Root: healthyRoot(t), Release: "6.18.0-test", Euid: 0,
		ProbeLSM: func() error {
			return &ProbeError{
				Reason: "the kernel refused to load a BPF LSM program: BPF_PROG_LOAD returned EPERM although running as root",
				Fix:    "use the fanotify backend (backend: fanotify) or another kernel",
				Err:    errors.New("operation not permitted"),
			}
		},
		ProbeFanotify: func() error { return nil },
		ProbeSockAddr: func() error { return nil },
		ProbeUnix:     func() (string, error) { return "by name", nil },
	})
	v := verdict(t, r, "bpf-lsm")
	if v.State != NotUsable || !strings.Contains(v.Detail, "EPERM although running as root") || v.Fix != "use the fanotify backend (backend: fanotify) or another kernel" {
		t.Errorf("bpf-lsm verdict: %+v", v)
	}
	if c := find(t, r, "bpf-lsm-load"); c.Status != Fail || strings.Contains(c.Detail, "; use the") {
		t.Errorf("probe check mixes reason and fix: %+v", c)
	}
	if r.Backend != BackendFanotify || !r.Ready || r.Backends[0].State != NotUsable || r.Backends[1].State != Usable {
		t.Errorf("backend %q ready %v backends %+v", r.Backend, r.Ready, r.Backends)
	}
}

// Both backends need the sock_addr programs: without them nothing is ready.
func TestSockAddrRefusedNothingReady(t *testing.T) {
	r := Run(Options{
		Root: healthyRoot(t), Release: "6.18.0-test", Euid: 0,
		ProbeLSM:      func() error { return nil },
		ProbeFanotify: func() error { return nil },
		ProbeSockAddr: func() error { return errors.New("attach: invalid argument") },
		ProbeUnix:     func() (string, error) { return "none: old kernel", errors.New("no hooks") },
	})
	if c := find(t, r, "sock-addr"); c.Status != Fail || !strings.Contains(c.Detail, "invalid argument") || !strings.Contains(c.Fix, "CONFIG_CGROUP_BPF") {
		t.Errorf("sock-addr: %+v", c)
	}
	if r.Ready || r.Backend != "" || !strings.Contains(r.Summary, "sock_addr") {
		t.Errorf("ready=%v backend=%q summary=%q", r.Ready, r.Backend, r.Summary)
	}
	for _, b := range r.Backends {
		if b.State != NotUsable {
			t.Errorf("backend %s = %s, want not usable", b.Name, b.State)
		}
	}
	if v := verdict(t, r, "unix-sockets"); v.State != NotConfined || v.Detail != "none: old kernel" || !strings.Contains(v.Fix, "6.7") {
		t.Errorf("unix verdict: %+v", v)
	}
	if c := find(t, r, "unix-sockets"); c.Status != Warn {
		t.Errorf("unix check: %+v, want a warning (enforcement still runs)", c)
	}
}

func TestFanotifyProbeFailure(t *testing.T) {
	r := Run(Options{
		Root: healthyRoot(t), Release: "6.18.0-test", Euid: 0,
		ProbeLSM:      func() error { return &ProbeError{Reason: "BPF LSM is not active"} },
		ProbeFanotify: func() error { return errors.New("fanotify_init: operation not permitted") },
		ProbeSockAddr: func() error { return nil },
	})
	if v := verdict(t, r, "fanotify"); v.State != NotUsable || !strings.Contains(v.Detail, "fanotify_init: operation not permitted") || v.Fix == "" {
		t.Errorf("fanotify verdict: %+v", v)
	}
	if v := verdict(t, r, "unix-sockets"); v.State != Unknown {
		t.Errorf("unix verdict without a probe: %+v", v)
	}
	if r.Ready {
		t.Errorf("ready with neither backend usable: %+v", r)
	}
}

// A 5.4 kernel runs fanotify but not BPF LSM, whatever the LSM list says.
func TestOldKernelVerdicts(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"sys/kernel/btf/vmlinux":  "x",
		"sys/kernel/security/lsm": "bpf",
		"proc/self/mountinfo":     mountinfoV2,
	})
	r := Run(Options{Root: root, Release: "5.4.0", Euid: 0,
		ProbeLSM:      func() error { return nil },
		ProbeFanotify: func() error { return nil },
		ProbeSockAddr: func() error { return nil },
	})
	if v := verdict(t, r, "bpf-lsm"); v.State != NotUsable || !strings.Contains(v.Detail, "5.7") {
		t.Errorf("bpf-lsm verdict on 5.4: %+v", v)
	}
	if r.Backend != BackendFanotify {
		t.Errorf("backend %q", r.Backend)
	}
}

// TestLandlockLevels: doctor says what each Landlock ABI leaves open and
// what to do.
func TestLandlockLevels(t *testing.T) {
	for _, c := range []struct {
		abi    int
		status Status
		detail string
		fix    string
	}{
		{7, OK, "out of reach", ""},
		{3, Warn, "can still signal", "Linux 6.12"},
		{3, Warn, "reported by the agent from the system calls they made fail", "Linux 6.12"},
		{0, Warn, "AIGATE_LANDLOCK=optional", "lsm="},
	} {
		m := &machine{opts: Options{LandlockABI: func() int { return c.abi }}}
		got := m.landlock()
		if got.Status != c.status || !strings.Contains(got.Detail, c.detail) || !strings.Contains(got.Fix, c.fix) {
			t.Errorf("ABI %d: %+v", c.abi, got)
		}
	}
	if got := (&machine{}).landlock(); got.Status != Skip {
		t.Errorf("no probe: %+v", got)
	}
}

// TestLandlockReported: doctor says whether Landlock's refusals become
// events, from the agent when one runs, else from the audit status (root).
func TestLandlockReported(t *testing.T) {
	disabled := func() string { return "not reported: the kernel's audit is disabled" }
	enabled := func() string { return "reported (from the kernel's audit records)" }
	for _, c := range []struct {
		name   string
		opts   Options
		detail string
	}{
		{"agent says", Options{Agent: &Agent{Landlock: "reported (from the kernel's audit records)"}, LandlockAudit: disabled}, "as aigate events: reported"},
		{"root, audit off", Options{LandlockAudit: disabled}, "as aigate events: reported by the agent from the system calls they made fail (tp_btf/sys_exit) (not reported: the kernel's audit is disabled"},
		{"root, audit on, no agent", Options{LandlockAudit: enabled}, "none runs now"},
		{"no root, no agent", Options{Euid: 1000, LandlockAudit: disabled}, "unknown without root"},
	} {
		c.opts.LandlockABI = func() int { return 7 }
		got := (&machine{opts: c.opts}).landlock()
		if !strings.Contains(got.Detail, c.detail) {
			t.Errorf("%s: %+v", c.name, got)
		}
	}
}

// TestUsernsCheck: doctor says which mechanism refuses user namespaces to
// sandboxes on this kernel, and when the machine allows none anyway.
func TestUsernsCheck(t *testing.T) {
	for _, c := range []struct {
		major, minor int
		max          string
		want, not    string
	}{
		{6, 1, "63000\n", "userns_create hook, with events", "allows none"},
		{5, 19, "63000\n", "both backends refuse them with a seccomp filter", "hook, with events"},
		{6, 12, "0\n", "allows none to anyone", "both backends"},
	} {
		m := &machine{opts: Options{Root: fakeRoot(t, map[string]string{"proc/sys/user/max_user_namespaces": c.max})}}
		got := m.userns(c.major, c.minor)
		if got.Status != OK || !strings.Contains(got.Detail, c.want) || strings.Contains(got.Detail, c.not) {
			t.Errorf("%d.%d, max %q: %+v", c.major, c.minor, c.max, got)
		}
	}
}

// Without root the load probe cannot run, but a refusal a root run
// recorded this boot is known: doctor and status say fanotify, not "BPF
// LSM if its trial load works".
func TestLSMRefusalRememberedWithoutRoot(t *testing.T) {
	remembered := &ProbeError{
		Reason: "the kernel refused to load a BPF LSM program (found earlier this boot)",
		Fix:    "nothing needs doing: backend: auto uses fanotify",
	}
	opts := Options{
		Root: healthyRoot(t), Release: "6.18.0-test", Euid: 1000,
		ProbeLSM:      func() error { t.Error("probe ran without root"); return nil },
		RememberedLSM: func() error { return remembered },
	}
	r := Run(opts)
	if c := find(t, r, "bpf-lsm-load"); c.Status != Fail || c.Detail != remembered.Reason || c.Fix != remembered.Fix {
		t.Errorf("probe check: %+v, want the remembered refusal", c)
	}
	if r.Backend != BackendFanotify || !strings.Contains(r.Summary, "fanotify") {
		t.Errorf("backend %q summary %q, want fanotify", r.Backend, r.Summary)
	}
	// Nothing remembered: still "not proven".
	opts.RememberedLSM = func() error { return nil }
	r = Run(opts)
	if c := find(t, r, "bpf-lsm-load"); c.Status != Skip {
		t.Errorf("probe check with nothing remembered: %+v, want skipped (needs root)", c)
	}
	if r.Backend != BackendLSM || !strings.Contains(r.Summary, "not proven") {
		t.Errorf("backend %q summary %q, want lsm, not proven", r.Backend, r.Summary)
	}
}

const kallsymsListed = "ffffffff81000000 T _stext\nffffffff82a0b040 D rename_lock\n"

// TestVerdictCache: doctor says the BPF LSM backend caches verdicts only
// where the loader will find rename_lock in /proc/kallsyms, and how to get
// it where not; without root, hidden addresses prove nothing.
func TestVerdictCache(t *testing.T) {
	for _, tc := range []struct {
		name     string
		kallsyms string // "" no file
		euid     int
		probe    error
		status   Status
		says     string
	}{
		{"listed", kallsymsListed, 0, nil, OK, "answered from a per-inode cache"},
		{"hidden from root", "0000000000000000 D rename_lock\n", 0, nil, Warn, "kptr_restrict"},
		{"hidden from a user", "0000000000000000 D rename_lock\n", 1000, nil, Skip, "hides addresses from this user"},
		{"not listed", "ffffffff81000000 T _stext\n", 0, nil, Warn, "CONFIG_KALLSYMS_ALL"},
		{"unreadable", "", 0, nil, Warn, "every open is checked in full"},
		{"no BPF LSM", kallsymsListed, 0, errors.New("load: operation not permitted"), Skip, "cannot run here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{
				"sys/kernel/security/lsm": "lockdown,capability,bpf\n",
				"boot/config-6.1.0-test":  "CONFIG_BPF_LSM=y\n",
			}
			if tc.kallsyms != "" {
				files["proc/kallsyms"] = tc.kallsyms
			}
			opts := Options{Root: fakeRoot(t, files), Release: "6.1.0-test", Euid: tc.euid}
			if tc.euid == 0 {
				opts.ProbeLSM = func() error { return tc.probe }
			}
			c := find(t, Run(opts), "verdict-cache")
			if c.Status != tc.status || !strings.Contains(c.Detail+" "+c.Fix, tc.says) {
				t.Errorf("%s %q (fix %q), want %s saying %q", c.Status, c.Detail, c.Fix, tc.status, tc.says)
			}
		})
	}
}

// TestExecCopies: doctor says a copy of a deny_exec binary runs on the BPF
// LSM backend before 6.0, is refused by size alone without IMA, and by
// content otherwise; never that it is refused where it is not.
func TestExecCopies(t *testing.T) {
	for _, tc := range []struct {
		release, config string
		status          Status
		says            string
	}{
		{"5.15.0-test", "CONFIG_BPF_LSM=y\nCONFIG_IMA=y\n", Warn, "copy of a deny_exec binary under another name runs"},
		{"6.1.0-test", "CONFIG_BPF_LSM=y\n", Warn, "no IMA"},
		{"6.1.0-test", "CONFIG_BPF_LSM=y\nCONFIG_IMA=y\n", OK, "under any name and anywhere is refused"},
	} {
		root := fakeRoot(t, map[string]string{"boot/config-" + tc.release: tc.config})
		r := Run(Options{Root: root, Release: tc.release, Euid: 1000})
		c := find(t, r, "exec-copies")
		if c.Status != tc.status || !strings.Contains(c.Detail, tc.says) {
			t.Errorf("%s %q: %s %q, want %s containing %q", tc.release, tc.config, c.Status, c.Detail, tc.status, tc.says)
		}
	}
}

// favordynmods is reported from the cgroup v2 mount's own options, with
// what its absence costs and how to set it where the kernel has it.
func TestFavorDynmods(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, release string
		status                   Status
		detail, fix              string
	}{
		{"on", mountinfoV2, "6.1.0-test", OK, "does not wait", ""},
		{"off", mountinfoHybrid, "6.18.0-test", Warn, "/sys/fs/cgroup/unified is not mounted with favordynmods", "sudo mount -o remount,favordynmods /sys/fs/cgroup/unified"},
		// The option's name in another mount's options does not count.
		{"another mount's option", mountinfoHybrid + "40 22 0:40 / /mnt rw - tmpfs favordynmods rw,favordynmods\n", "6.18.0-test", Warn, "not mounted with favordynmods", "sudo aigate setup --favordynmods"},
		{"kernel without it", mountinfoHybrid, "5.15.0-test", OK, "needs Linux 6.0", ""},
		{"no cgroup2", "22 1 0:21 / /sys rw - sysfs sysfs rw\n", "6.18.0-test", Skip, "no cgroup v2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, map[string]string{"proc/self/mountinfo": tc.mountinfo})
			r := Run(Options{Root: root, Release: tc.release, Euid: 0, LandlockABI: func() int { return 7 }})
			c := find(t, r, "favordynmods")
			if c.Status != tc.status || !strings.Contains(c.Detail, tc.detail) || !strings.Contains(c.Fix, tc.fix) || (tc.fix == "") != (c.Fix == "") {
				t.Errorf("got %+v, want status %s, detail with %q, fix with %q", c, tc.status, tc.detail, tc.fix)
			}
		})
	}
}
