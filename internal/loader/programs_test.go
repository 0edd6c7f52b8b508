//go:build linux

package loader

import (
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// The program list comes from the generated names, and its names are the
// link pins of earlier builds: a renamed C function would leave an old
// pinned link attached beside the new one.
func TestLSMProgramNamesArePinNames(t *testing.T) {
	want := []string{
		"bprm_check", "bprm_copy", "file_ioctl", "file_ioctl_compat", "file_mprotect", "file_open", "mmap_copy", "mmap_file",
		"path_chmod", "path_chown", "path_link", "path_mkdir", "path_mknod", "path_rename",
		"path_rmdir", "path_symlink", "path_truncate", "path_unlink",
		"ptrace_access", "ptrace_traceme", "socket_connect", "socket_create", "socket_sendmsg",
		"task_kill", "unix_connect", "unix_may_send", "userns_create",
	}
	if !slices.Equal(lsmProgramOrder(), want) {
		t.Errorf("lsmProgramOrder = %q\nwant %q", lsmProgramOrder(), want)
	}
	spec, err := loadLsm()
	if err != nil {
		t.Fatal(err)
	}
	var inSpec []string
	for name := range spec.Programs {
		inSpec = append(inSpec, strings.TrimPrefix(name, "aigate_"))
	}
	slices.Sort(inSpec)
	if !slices.Equal(inSpec, lsmProgramOrder()) {
		t.Errorf("programs in lsm.c: %q, attached: %q", inSpec, lsmProgramOrder())
	}
}

// Every operation the kernel can report has a name, so that no event or
// counter is dropped as unknown.
func TestKernelOpsAndKindsNamed(t *testing.T) {
	for op := kernelAigateOpAIGATE_OP_READ; op < kernelAigateOpAIGATE_OP_MAX; op++ {
		if _, ok := eventOps[op]; !ok {
			t.Errorf("enum aigate_op %d has no events.Op", op)
		}
	}
	for k := kernelAigateKindAIGATE_KIND_FILE; k <= kernelAigateKindAIGATE_KIND_PROC; k++ {
		if _, ok := eventKinds[k]; !ok {
			t.Errorf("enum aigate_kind %d has no events.Kind", k)
		}
	}
	if got := opKind(eventOps[kernelAigateOpAIGATE_OP_SIGNAL]); got != events.KindProc {
		t.Errorf("signal counts as %s", got)
	}
}

// policy knows nothing of the kernel: each of its accesses is bound to the
// kernel's by name, and the three rule sets stay apart from allow_unix and
// the ancestors.
func TestKernelAccess(t *testing.T) {
	seen := map[kernelAigateAccess]policy.Access{}
	for _, a := range []policy.Access{policy.AccessRead, policy.AccessWrite, policy.AccessExec} {
		ka, err := kernelAccess(a)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if ka == accessUnix || ka == accessAncestors {
			t.Errorf("%s shares the rule set of allow_unix or the ancestors", a)
		}
		if prev, dup := seen[ka]; dup {
			t.Errorf("%s and %s share rule set %d", a, prev, ka)
		}
		seen[ka] = a
	}
	if _, err := kernelAccess(policy.Access(0)); err == nil {
		t.Error("access 0 mapped to a kernel rule set")
	}
}
