//go:build linux

package seccomp

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/uring"
)

const helperEnv = "AIGATE_SECCOMP_HELPER"

func init() {
	testutil.HelperOps(helperEnv, helperOp)
}

// helperOp runs one operation and prints its errno ("0": success):
//
//	install WHAT,...      the filter refusing families, userns, uring
//	socket|socketpair FAM a datagram socket (pair) of FAM
//	unshare               unshare(CLONE_NEWUSER) (EINVAL unfiltered: Go is threaded)
//	clone                 start /bin/true with CLONE_NEWUSER (Go's clone)
//	clonefiles            start /bin/true with CLONE_FILES (Go's clone)
//	thread                a goroutine on a thread of its own
//	clone3                clone3(NULL, 0): EINVAL from the kernel
//	setns user|net|any    setns(-1, type): EBADF from the kernel
//	uring                 io_uring_setup
//	sh SCRIPT             sh -c SCRIPT: its exit status
func helperOp(args []string) string {
	switch args[0] {
	case "install":
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return err.Error()
		}
		var r Refuse
		for _, w := range strings.Split(args[1], ",") {
			switch w {
			case "families":
				r.Families = true
			case "userns":
				r.Userns = true
			case "uring":
				r.IOUring = true
			case "files":
				r.SharedFiles = true
			}
		}
		if err := Install(r); err != nil {
			return err.Error()
		}
		return "0"
	case "socket", "socketpair":
		fam := map[string]int{"unix": unix.AF_UNIX, "inet": unix.AF_INET, "inet6": unix.AF_INET6,
			"netlink": unix.AF_NETLINK, "vsock": unix.AF_VSOCK, "packet": unix.AF_PACKET, "tipc": unix.AF_TIPC}[args[1]]
		typ := unix.SOCK_DGRAM
		if args[0] == "socketpair" {
			fds, err := unix.Socketpair(fam, typ, 0)
			if err == nil {
				unix.Close(fds[0])
				unix.Close(fds[1])
			}
			return errno(err)
		}
		fd, err := unix.Socket(fam, typ, 0)
		if err == nil {
			unix.Close(fd)
		}
		return errno(err)
	case "unshare":
		return errno(unix.Unshare(unix.CLONE_NEWUSER))
	case "clone":
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}
		return errno(cmd.Run())
	case "clonefiles":
		// The child shares this table until it execs: it must not change
		// it, so it gets the same stdio, which it leaves in place.
		cmd := exec.Command("/bin/true")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_FILES}
		return errno(cmd.Run())
	case "thread":
		done := make(chan struct{})
		go func() { runtime.LockOSThread(); close(done) }() // a new M: clone with CLONE_THREAD|CLONE_FILES
		<-done
		return "0"
	case "clone3":
		_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
		return errno(e)
	case "setns":
		typ := map[string]int{"user": unix.CLONE_NEWUSER, "net": unix.CLONE_NEWNET, "any": 0}[args[1]]
		_, _, e := unix.Syscall(unix.SYS_SETNS, uintptr(^uint(0)), uintptr(typ), 0)
		return errno(e)
	case "uring":
		r, err := uring.New(uring.Inline)
		if err == nil {
			r.Close()
		}
		return errno(err)
	case "sh":
		cmd := exec.Command("sh", "-c", strings.Join(args[1:], " "))
		cmd.Stderr = os.Stderr
		if out, err := cmd.Output(); err != nil {
			return "failed: " + err.Error() + ": " + strings.ReplaceAll(string(out), "\n", " ")
		}
		return "0"
	}
	return "bad op"
}

func errno(err error) string {
	if err == nil || err == syscall.Errno(0) {
		return "0"
	}
	for {
		if e, ok := err.(unix.Errno); ok {
			return unix.ErrnoName(e)
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err.Error()
		}
		err = u.Unwrap()
	}
}

// runOps runs the helper with ops (";" separated) and returns its lines.
func runOps(t *testing.T, ops string) []string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"="+ops)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %q: %v", ops, err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func check(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s: %q\nwant %q", what, got, want)
	}
}

// TestRefuseSocketFamilies: once the filter is on, socket and socketpair
// of unix, inet, inet6 and netlink work and every other family fails with
// EPERM (not EAFNOSUPPORT: the call never reaches the kernel's family
// table), also in a child exec'ed afterwards. A process without the filter
// gets the kernel's own answers.
func TestRefuseSocketFamilies(t *testing.T) {
	ops := "socket unix;socket inet;socket inet6;socket netlink;socketpair unix;socket vsock;socket packet;socket tipc;socketpair vsock"
	got := runOps(t, "install families;"+ops)
	check(t, "with the filter", got, []string{"0", "0", "0", "0", "0", "0", "EPERM", "EPERM", "EPERM", "EPERM"})
	// Without it, nothing answers EPERM for vsock or tipc (the kernel may
	// lack them: EAFNOSUPPORT).
	for _, e := range runOps(t, "socket vsock;socket tipc") {
		if e == "EPERM" {
			t.Errorf("without the filter: vsock or tipc EPERM")
		}
	}
}

// TestRefuseUserns: with Userns, unshare and clone with CLONE_NEWUSER and
// setns into a user namespace (or any, nstype 0) fail with EPERM, clone3
// with ENOSYS, also in a child (util-linux unshare -U); setns of another
// type, clone without the flag (fork, threads) and sockets still reach
// the kernel. Without the filter each gets the kernel's own answer.
func TestRefuseUserns(t *testing.T) {
	ops := "unshare;clone;clone3;setns user;setns any;setns net;socket vsock;uring;sh true;sh unshare -U true"
	ctl := runOps(t, ops)
	got := runOps(t, "install userns;"+ops)
	check(t, "with the filter", got[1:9], []string{"EPERM", "EPERM", "ENOSYS", "EPERM", "EPERM", "EBADF", ctl[6], ctl[7]})
	if got[9] != "0" || !strings.HasPrefix(got[10], "failed") {
		t.Errorf("sh true: %s; unshare -U in a child: %s (want a failure)", got[9], got[10])
	}
	// The kernel's answers: a threaded process may not unshare a user
	// namespace, clone3 without arguments and setns(-1) are invalid.
	check(t, "without the filter", ctl[:6], []string{"EINVAL", "0", "EINVAL", "EBADF", "EBADF", "EBADF"})
	if ctl[9] != "0" {
		t.Errorf("unshare -U true without the filter: %s (unprivileged user namespaces off on this host?)", ctl[9])
	}
}

// TestRefuseIOUring: with IOUring, io_uring_setup fails with EPERM; the
// other refusals are independent.
func TestRefuseIOUring(t *testing.T) {
	ctl := runOps(t, "uring;socket vsock")
	if ctl[0] != "0" {
		testutil.SkipUnlessKernel(t, "io_uring_setup refused without the filter: "+ctl[0])
	}
	got := runOps(t, "install uring;uring;socket vsock;clone")
	check(t, "with the filter", got, []string{"0", "EPERM", ctl[1], "0"})
}

// TestRefuseSharedFiles: with SharedFiles, clone with CLONE_FILES (a
// process sharing the descriptor table) fails with EPERM and clone3 with
// ENOSYS; new threads, plain clone (fork/exec) and children still work.
// Without the filter the kernel allows each.
func TestRefuseSharedFiles(t *testing.T) {
	ops := "clonefiles;clone3;thread;sh true;unshare"
	ctl := runOps(t, ops)
	check(t, "without the filter", ctl[:4], []string{"0", "EINVAL", "0", "0"})
	got := runOps(t, "install files;"+ops)
	check(t, "with the filter", got, []string{"0", "EPERM", "ENOSYS", "0", "0", ctl[4]})
}
