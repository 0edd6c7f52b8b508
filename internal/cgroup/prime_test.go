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
)

const primeHelperEnv = "AIGATE_CGROUP_PRIME_HELPER"

func init() {
	if os.Getenv(primeHelperEnv) != "" {
		PrimeMigration()
		cg, err := ProcessCgroup(os.Getpid())
		if err != nil {
			fmt.Print(err)
		}
		fmt.Print(cg)
		os.Exit(0)
	}
}

// PrimeMigration moves nothing: a process started in a cgroup is still
// there after it.
func TestPrimeMigrationStaysPut(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	g, err := Create("aigate-test", fmt.Sprintf("prime%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
		_ = os.Remove(filepath.Dir(g.Path))
	})
	fd, err := g.OpenFD()
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), primeHelperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	root, _ := Mountpoint()
	if want := strings.TrimPrefix(g.Path, root); string(out) != want {
		t.Fatalf("after PrimeMigration the process is in %q, want %q", out, want)
	}
}
