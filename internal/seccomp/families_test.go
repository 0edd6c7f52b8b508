//go:build linux

package seccomp

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
)

const helperEnv = "AIGATE_SECCOMP_HELPER"

func init() {
	testutil.HelperOps(helperEnv, func(args []string) string {
		switch args[0] {
		case "install":
			runtime.LockOSThread()
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				return err.Error()
			}
			if err := RefuseSocketFamilies(); err != nil {
				return err.Error()
			}
			return "0"
		case "socket", "socketpair":
			fam := map[string]int{"unix": unix.AF_UNIX, "inet": unix.AF_INET, "inet6": unix.AF_INET6,
				"netlink": unix.AF_NETLINK, "vsock": unix.AF_VSOCK, "packet": unix.AF_PACKET, "tipc": unix.AF_TIPC}[args[1]]
			typ := unix.SOCK_DGRAM
			var err error
			if args[0] == "socketpair" {
				var fds [2]int
				if fds, err = unix.Socketpair(fam, typ, 0); err == nil {
					unix.Close(fds[0])
					unix.Close(fds[1])
				}
			} else {
				var fd int
				if fd, err = unix.Socket(fam, typ, 0); err == nil {
					unix.Close(fd)
				}
			}
			if err == nil {
				return "0"
			}
			return unix.ErrnoName(err.(unix.Errno))
		}
		return "bad op"
	})
}

// TestRefuseSocketFamilies: once the filter is on, socket and socketpair
// of unix, inet, inet6 and netlink work and every other family fails with
// EPERM (not EAFNOSUPPORT: the call never reaches the kernel's family
// table), also in a child exec'ed afterwards. A process without the filter
// gets the kernel's own answers.
func TestRefuseSocketFamilies(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ops := "socket unix;socket inet;socket inet6;socket netlink;socketpair unix;socket vsock;socket packet;socket tipc;socketpair vsock"
	run := func(ops string) []string {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), helperEnv+"="+ops)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("helper %q: %v", ops, err)
		}
		return strings.Fields(strings.TrimSpace(string(b)))
	}
	got := run("install;" + ops)
	want := []string{"0", "0", "0", "0", "0", "0", "EPERM", "EPERM", "EPERM", "EPERM"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("with the filter: %v\nwant %v", got, want)
	}
	// Without it, nothing answers EPERM for vsock or tipc (the kernel may
	// lack them: EAFNOSUPPORT).
	ctl := run("socket vsock;socket tipc")
	for _, e := range ctl {
		if e == "EPERM" {
			t.Errorf("without the filter: %v", ctl)
		}
	}
}
