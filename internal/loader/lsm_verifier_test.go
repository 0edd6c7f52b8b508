//go:build linux

package loader

import (
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestLSMVerifierFloors: no LSM program is pruned to a trivial body by this
// kernel's verifier (see testutil.CheckVerifierFloors). Run in the VM on
// every kernel of make vmtest.
func TestLSMVerifierFloors(t *testing.T) {
	testutil.RequireRoot(t)
	if err := ProbeLSM(); err != nil {
		testutil.SkipUnlessLSM(t, err.Error())
	}
	spec, err := loadLsm()
	if err != nil {
		t.Fatal(err)
	}
	// As OpenLSM loads it: with rename_lock's address the verifier
	// explores the verdict cache's paths too.
	if noCache, err := setRenameLock(spec, lookupRenameLock); err != nil {
		t.Fatal(err)
	} else if noCache != nil {
		t.Logf("floors without the verdict cache: %v", noCache)
	}
	testutil.CheckVerifierFloors(t, spec, map[string]int{
		// Verified on 6.1 / 6.12: the file and path hooks share their
		// matching code and differ in the paths they check.
		"aigate_bprm_check":     9800,  // 19602 / 58555
		"aigate_bprm_copy":      850,   // 1857 / 1778
		"aigate_file_ioctl":     800,   // 1625 / 1624
		"aigate_file_mprotect":  9500,  // 19129 / 38061
		"aigate_file_open":      6200,  // 12589 / 72041
		"aigate_mmap_copy":      750,   // 1660 / 1581
		"aigate_mmap_file":      9600,  // 19374 / 38320
		"aigate_path_chmod":     14500, // 29115 / 47773
		"aigate_path_chown":     14500, // 29115 / 47773
		"aigate_path_link":      28000, // 56495 / 151665
		"aigate_path_mkdir":     14500, // 29107 / 76656
		"aigate_path_mknod":     14500, // 29107 / 76656
		"aigate_path_rename":    30000, // 60824 / 151709
		"aigate_path_rmdir":     15500, // 31004 / 76683
		"aigate_path_symlink":   15500, // 31004 / 76683
		"aigate_path_truncate":  14500, // 29115 / 47773
		"aigate_path_unlink":    15500, // 31004 / 76683
		"aigate_ptrace_access":  1350,  // 2797 / 2703
		"aigate_ptrace_traceme": 1350,  // 2812 / 2718
		"aigate_socket_connect": 1550,  // 3297 / 3129
		"aigate_socket_create":  1250,  // 2804 / 2537
		"aigate_socket_sendmsg": 1400,  // 3015 / 2851
		"aigate_task_kill":      1500,  // 3132 / 3038; 5 when 6.12 pruned it
		"aigate_unix_may_send":  2200,  // 4482 / 4494
		"aigate_unix_connect":   2100,  // 4278 / 4288
		"aigate_userns_create":  900,   // 1928 / 1841

		// Where the kernel has the hook (6.12, Debian's 6.1.192):
		// file_ioctl's body.
		"aigate_file_ioctl_compat": 800,
	})

	spec, err = loadLsmProbe()
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVerifierFloors(t, spec, map[string]int{
		"aigate_probe_open": 10, // 20 / 20
	})
}
