// Package smoke is the trivial test binary that vmtest's own smoke test boots:
// it checks what the guest promises (BPF LSM active, mounts, users) and can be
// told to fail or to exit with a chosen status, to prove vmtest reports both.
package smoke

import (
	"flag"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"syscall"
	"testing"
)

var (
	fail = flag.Bool("smoke.fail", false, "make TestDeliberateFailure fail")
	exit = flag.Int("smoke.exit", -1, "exit with this status after the tests")
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if *exit >= 0 {
		os.Exit(*exit)
	}
	os.Exit(code)
}

func inVM(t *testing.T) {
	if os.Getenv("AIGATE_VMTEST") != "1" {
		// skip-ok: a guest-side fixture of vmtest's own tests.
		t.Skip("only meaningful inside vmtest's guest")
	}
}

func TestGuestHasBPFLSM(t *testing.T) {
	inVM(t)
	data, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		t.Fatalf("read LSM list: %v", err)
	}
	lsms := strings.Split(strings.TrimSpace(string(data)), ",")
	found := false
	for _, l := range lsms {
		found = found || l == "bpf"
	}
	if !found {
		t.Fatalf("bpf not in LSM list %q", data)
	}
	for _, p := range []string{"/sys/kernel/btf/vmlinux", "/sys/fs/cgroup/cgroup.controllers", "/sys/fs/bpf"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%v", err)
		}
	}
	if os.Geteuid() != 0 {
		t.Errorf("tests run as uid %d, want root", os.Geteuid())
	}
}

func TestGuestUsersAndFiles(t *testing.T) {
	inVM(t)
	u, err := user.Lookup("alice")
	if err != nil || u.Uid != "1000" {
		t.Errorf("lookup alice = %+v, %v; want uid 1000", u, err)
	}
	if _, err := os.ReadFile("testdata/hello.txt"); err != nil {
		t.Errorf("package testdata not copied: %v", err)
	}
	if got := os.Getenv("SMOKE_ENV"); got != "it's set" {
		t.Errorf("SMOKE_ENV = %q, want it passed through --env", got)
	}
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatalf("temp dir not writable: %v", err)
	}
	f.Close()
}

func TestDeliberateFailure(t *testing.T) {
	if !*fail {
		// skip-ok: a guest-side fixture of vmtest's own tests.
		t.Skip("runs only with -smoke.fail")
	}
	t.Fatal("failing on purpose (-smoke.fail)")
}

// TestShare checks a --share mount (the harness passes its guest path in
// SMOKE_SHARE): readable, and not writable even after the guest's root
// remounts it read-write, because the host side is a read-only bind mount.
func TestShare(t *testing.T) {
	dir := os.Getenv("SMOKE_SHARE")
	if dir == "" {
		// skip-ok: a guest-side fixture of vmtest's own tests.
		t.Skip("no share (SMOKE_SHARE unset)")
	}
	if got, err := os.ReadFile(dir + "/hello.txt"); err != nil || string(got) != "hello\n" {
		t.Fatalf("read shared hello.txt = %q, %v", got, err)
	}
	if err := os.WriteFile(dir+"/written-by-guest", []byte("x"), 0o644); err == nil {
		t.Error("wrote to a read-only share")
	}
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT, ""); err != nil {
		t.Logf("remount rw refused: %v", err)
	}
	if err := os.WriteFile(dir+"/written-by-guest", []byte("x"), 0o644); err == nil {
		t.Error("wrote to the share after remounting it read-write: the host side is writable")
	}
}

// TestHostToolIP checks that the host's ip (iproute2, dynamically linked)
// runs in the guest with its libraries: busybox's ip has no netns.
func TestHostToolIP(t *testing.T) {
	inVM(t)
	out, err := exec.Command("ip", "netns", "add", "vmtest-smoke").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "del", "vmtest-smoke").CombinedOutput(); err != nil {
		t.Errorf("ip netns del: %v\n%s", err, out)
	}
}
