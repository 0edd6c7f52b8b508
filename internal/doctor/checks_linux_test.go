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
30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
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
		"boot/config-6.1.0-test":           "CONFIG_BPF_LSM=y\nCONFIG_FANOTIFY_ACCESS_PERMISSIONS=y\n",
	})
	probed := false
	r := Run(Options{Root: root, Release: "6.1.0-test", Euid: 0, ProbeLSM: func() error { probed = true; return nil }})
	for _, c := range r.Checks {
		if c.Status != OK {
			t.Errorf("%s: %s (%s)", c.Name, c.Status, c.Detail)
		}
	}
	if !probed || r.Backend != BackendLSM || !r.Ready || r.Failed() {
		t.Errorf("probed=%v backend=%q ready=%v failed=%v", probed, r.Backend, r.Ready, r.Failed())
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
	if c := find(t, r, "bpffs"); c.Status != Warn || c.Fix != "sudo mount -t bpf bpf /sys/fs/bpf" {
		t.Errorf("bpffs: %+v", c)
	}
	if c := find(t, r, "privileges"); c.Status != Warn || !strings.Contains(c.Fix, "sudo") {
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
	if got := unescapeOctal(`/mnt/my\040disk`); got != "/mnt/my disk" {
		t.Errorf("unescapeOctal = %q", got)
	}
}
