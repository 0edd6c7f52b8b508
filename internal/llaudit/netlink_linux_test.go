//go:build linux

package llaudit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/testutil"
)

const refuseEnv = "AIGATE_LLAUDIT_REFUSE"

// A child of the test that enters a Landlock domain handling writes and
// tries to write the file refuseEnv names.
func init() {
	path, ok := os.LookupEnv(refuseEnv)
	if !ok {
		return
	}
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if _, err := landlock.Restrict(landlock.Ruleset{HandledFS: unix.LANDLOCK_ACCESS_FS_WRITE_FILE}); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if err := os.WriteFile(path, []byte("x"), 0o600); err == nil {
		fmt.Println("written")
		os.Exit(1)
	}
	os.Exit(0)
}

// TestReaderLandlockRecords: with audit enabled, a Landlock refusal
// reaches a reader of the read-log group, also from a network namespace
// of its own (the kernel multicasts audit records in the initial one
// only), with the domain's creator; the audit state is put back.
func TestReaderLandlockRecords(t *testing.T) {
	testutil.RequireRoot(t)
	if abi := landlock.ABI(); abi < 7 {
		testutil.SkipUnlessKernel(t, fmt.Sprintf("Landlock ABI %d: no audit records before ABI 7", abi))
	}
	r, err := OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	was, err := SetEnabled(true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := SetEnabled(was); err != nil {
			t.Errorf("restore audit: %v", err)
		}
	})
	target := filepath.Join(t.TempDir(), "refused")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), refuseEnv+"="+target)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	var access, domain bool
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !(access && domain); {
		rec, ok, _, err := r.Read(100 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case !ok:
		case rec.Type == TypeLandlockAccess && rec.Path == target:
			access = true
		case rec.Type == TypeLandlockDomain && rec.Status == "allocated" && rec.PID == cmd.Process.Pid:
			domain = true
		}
	}
	if !access || !domain {
		t.Errorf("records: access %t, domain of pid %d %t", access, cmd.Process.Pid, domain)
	}
}
