//go:build linux

package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name, in, want string
		err            bool
	}{
		{"hybrid", "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "/sys/fs/cgroup/unified", false},
		{"pure v2 preferred", "30 25 0:26 / /mnt/other rw - cgroup2 cgroup2 rw\n31 25 0:27 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup", false},
		{"escaped", `30 25 0:26 / /mnt/with\040space rw - cgroup2 cgroup2 rw` + "\n", "/mnt/with space", false},
		{"none", "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("parseMountinfo = %q, %v; want %q, err=%v", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestCreateRunRemove places a real child into a new cgroup with
// CLONE_INTO_CGROUP and checks the kernel agrees on where it runs.
func TestCreateRunRemove(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	g, err := Create("aigate-test", fmt.Sprintf("t%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
		_ = os.Remove(filepath.Dir(g.Path))
	})
	var st unix.Stat_t
	if err := unix.Stat(g.Path, &st); err != nil || st.Ino != g.ID {
		t.Fatalf("id %d does not match inode (%v)", g.ID, err)
	}
	fd, err := g.OpenFD()
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	cg, err := ProcessCgroup(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := Mountpoint()
	if want := strings.TrimPrefix(g.Path, root); cg != want {
		t.Fatalf("child runs in %q, want %q", cg, want)
	}
	// A group a sandboxed process makes below its own is removed with it.
	if err := os.Mkdir(filepath.Join(g.Path, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	pids, err := g.PIDs()
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("PIDs = %v, %v", pids, err)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Path); !os.IsNotExist(err) {
		t.Fatalf("cgroup still exists: %v", err)
	}
}
