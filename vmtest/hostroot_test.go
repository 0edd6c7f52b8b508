package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestHostRootInitScript(t *testing.T) {
	script := initScript(initConfig{
		marker:   "@@vmtest-abc: ",
		disks:    []string{guestHostRoot, guestHostDirs},
		overlays: hostRootOverlays([]string{"/tmp/npm"}),
	})
	if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("init script does not parse: %v\n%s\n%s", err, out, script)
	}
	for _, want := range []string{
		`mount -t ext4 -o ro /dev/vda '/host'`,
		`mount -t ext4 -o ro /dev/vdb '/host-dirs'`,
		// The initramfs's /bin (busybox) above the host's.
		`'lowerdir=/bin:/host/usr/bin,upperdir=/run/hostroot/1/u,workdir=/run/hostroot/1/w' '/bin'`,
		`'lowerdir=/tmp/npm:/host-dirs/tmp/npm,`,
		"cp -a /host/etc/. /etc/",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("init script lacks %q:\n%s", want, script)
		}
	}
}

func TestQemuArgsDisks(t *testing.T) {
	args := qemuArgs(vmConfig{kernel: "k", initrd: "i", accel: "tcg", memMB: 1, cpus: 1, disks: []string{"/c/root.ext4", "/r/dirs.ext4"}})
	var drives []string
	for i, a := range args {
		if a == "-drive" {
			drives = append(drives, args[i+1])
		}
	}
	want := []string{"file=/c/root.ext4,if=virtio,format=raw,readonly=on", "file=/r/dirs.ext4,if=virtio,format=raw,readonly=on"}
	if !slices.Equal(drives, want) {
		t.Errorf("drives %q, want %q", drives, want)
	}
}

// TestStageTree: files, links and directories are mirrored, excluded
// directories are not, and the size counts regular files.
func TestStageTree(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "stage")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(src, "big"), 0o755))
	must(os.WriteFile(filepath.Join(src, "bin", "tool"), []byte("12345"), 0o755))
	must(os.WriteFile(filepath.Join(src, "big", "sdk"), []byte("xxxxxxxxxx"), 0o644))
	must(os.Symlink("tool", filepath.Join(src, "bin", "alias")))
	saved := hostRootExcludes
	hostRootExcludes = []string{filepath.Join(src, "big")}
	defer func() { hostRootExcludes = saved }()
	size, err := stageTree(src, dst)
	must(err)
	if size != 5 {
		t.Errorf("size %d, want 5", size)
	}
	if st, err := os.Stat(filepath.Join(dst, "bin", "tool")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("tool: %v, %v", st, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "bin", "alias")); err != nil || l != "tool" {
		t.Errorf("alias -> %q, %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "big")); err == nil {
		t.Error("the excluded directory was staged")
	}
	if size, err := stageTree(filepath.Join(src, "missing"), dst); err != nil || size != 0 {
		t.Errorf("missing source: %d, %v", size, err)
	}
}

func TestQemuArgsTCGSingle(t *testing.T) {
	args := strings.Join(qemuArgs(vmConfig{accel: "tcg-single", memMB: 1, cpus: 2}), " ")
	if !strings.Contains(args, "-accel tcg,thread=single ") || !strings.Contains(args, "-smp 2") {
		t.Errorf("tcg-single: %s", args)
	}
}
