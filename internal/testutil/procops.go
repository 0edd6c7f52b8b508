//go:build linux

package testutil

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ProcOps runs one cross-process operation that the process boundary
// (BPF LSM's ptrace and signal hooks, Landlock's scoping) checks, for a
// helper process: "OP PID" on process PID, or "child OP" on a child of its
// own, which every boundary allows. The OPs: "ptrace" attaches (and
// detaches), "environ", "mem" and "maps" open /proc/PID/... (the access
// check is at open), "stop" and "cont" send SIGSTOP and SIGCONT, "vmread"
// reads a byte with process_vm_readv, "getfd" takes descriptor 0 with
// pidfd_getfd. It returns the system call's error, nil when allowed.
func ProcOps(args []string) error {
	if len(args) != 2 {
		return errors.New("want OP PID or child OP")
	}
	if args[0] == "child" {
		c := exec.Command("sleep", "30")
		if err := c.Start(); err != nil {
			return err
		}
		defer func() { _ = c.Process.Kill(); _ = c.Wait() }()
		return procOp(args[1], c.Process.Pid)
	}
	pid, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	return procOp(args[0], pid)
}

func procOp(op string, pid int) error {
	switch op {
	case "ptrace":
		runtime.LockOSThread()
		if err := unix.PtraceAttach(pid); err != nil {
			return err
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WALL, nil)
		return unix.PtraceDetach(pid)
	case "environ", "mem", "maps":
		f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/" + op)
		if err != nil {
			return err
		}
		return f.Close()
	case "stop":
		return unix.Kill(pid, unix.SIGSTOP)
	case "cont":
		return unix.Kill(pid, unix.SIGCONT)
	case "vmread":
		// Any address: the permission check comes before the access, so a
		// refused read is EPERM and an allowed one EFAULT at worst.
		var b [1]byte
		local := []unix.Iovec{{Base: &b[0], Len: 1}}
		remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&b[0])), Len: 1}}
		_, err := unix.ProcessVMReadv(pid, local, remote, 0)
		if errors.Is(err, unix.EFAULT) {
			return nil
		}
		return err
	case "getfd":
		pfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return err
		}
		defer unix.Close(pfd)
		fd, err := unix.PidfdGetfd(pfd, 0, 0)
		if err != nil {
			return err
		}
		return unix.Close(fd)
	}
	return errors.New("unknown op " + op)
}
