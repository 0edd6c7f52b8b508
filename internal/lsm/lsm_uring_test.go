//go:build linux

package lsm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil/uringops"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// runUring runs the helper's io_uring ops (uringHelperOp) in sb
// without a network namespace, and returns one errno per op and the pid.
// For MODE+enter ops the helper starts outside and moves itself into sb.
func runUring(t *testing.T, sb *sandbox, ops ...string) ([]syscall.Errno, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), uringHelperEnv+"="+strings.Join(ops, ";"))
	cmd.Stderr = os.Stderr
	if strings.Contains(ops[0], "+enter") {
		procs, err := os.OpenFile(filepath.Join(sb.g.Path, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer procs.Close()
		cmd.ExtraFiles = []*os.File{procs}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(sb.fd.Fd())}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %q: %v", ops, err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(ops) {
		t.Fatalf("helper %q printed %q", ops, out)
	}
	res := make([]syscall.Errno, len(lines))
	for i, l := range lines {
		v, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("helper %q printed %q", ops, out)
		}
		res[i] = syscall.Errno(v)
	}
	return res, cmd.Process.Pid
}

// TestLSMUring: lsm/file_open and lsm/socket_create see io_uring's opens
// and socket creations from every io_uring context: a denied file and a
// packet socket are refused with EPERM and reported; other files open.
func TestLSMUring(t *testing.T) {
	l := openLSM(t)
	requireUring(t)
	dir := tempDir(t)
	secret := touch(t, dir+"/secret.txt")
	other := touch(t, dir+"/other.txt")
	sb := addSandbox(t, l, compiled(ruleSpec{policy.AccessRead, "paths", secret}), policy.ModeEnforce)
	packet := "socket " + strconv.Itoa(unix.AF_PACKET) + " " + strconv.Itoa(unix.SOCK_RAW) + " 0"

	for _, mode := range uringModes {
		t.Run(mode, func(t *testing.T) {
			ops := []string{"uring " + mode + " openat " + secret, "uring " + mode + " openat " + other, "uring " + mode + " " + packet}
			got, pid := runUring(t, sb, ops...)
			want := []syscall.Errno{syscall.EPERM, 0, syscall.EPERM}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("%s: errno %d (%v), want %d (%v)", ops[i], got[i], got[i], want[i], want[i])
				}
			}
			open, sock := nextEvent(t, l), nextEvent(t, l)
			noEvent(t, l)
			if open.Kind != events.KindFile || open.Op != events.OpRead || open.Path != secret || open.Rule != 1 ||
				open.CgroupID != sb.g.ID || int(open.TGID) != pid {
				t.Errorf("open event %+v, want a read of %s by %d in cgroup %d", open, secret, pid, sb.g.ID)
			}
			if sock.Kind != events.KindNet || sock.Path != "packet socket" || sock.CgroupID != sb.g.ID || int(sock.TGID) != pid {
				t.Errorf("socket event %+v, want a packet socket by %d in cgroup %d", sock, pid, sb.g.ID)
			}
			// The comm says which thread ran the operation, so the test
			// knows it covered the context it names.
			prefix := map[string]string{"io-wq": "iou-wrk-", "sqpoll": "iou-sqp-"}[strings.TrimSuffix(mode, "+enter")]
			for _, ev := range []events.Event{open, sock} {
				if prefix != "" && !strings.HasPrefix(ev.Comm, prefix) || prefix == "" && strings.HasPrefix(ev.Comm, "iou-") {
					t.Errorf("%s: event from %q, want the %q thread", mode, ev.Comm, prefix)
				}
			}
		})
	}
}

// The io_uring helper: the file and socket half of the loader's network
// helper (loader/net_uring_test.go), which the LSM tests used before the
// backend left the loader package.

const uringHelperEnv = "AIGATE_LSM_URING_OPS"

func init() {
	ops, ok := os.LookupEnv(uringHelperEnv)
	if !ok {
		return
	}
	for _, op := range strings.Split(ops, ";") {
		out, err := uringHelperOp(strings.Fields(op)[1:])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(out)
	}
	os.Exit(0)
}

// uringModes are the helper's MODE words. "+enter": the ring, and its worker
// or SQPOLL thread, are made before the process enters the sandbox.
var uringModes = []string{"inline", "io-wq", "sqpoll", "io-wq+enter", "sqpoll+enter"}

// The rings and answers shared with the other package's helper
// (testutil/uringops).
var (
	uringRing    = uringops.Ring
	uringErrno   = uringops.Errno
	requireUring = uringops.Require
)

// Helper answers beyond errnos.
const (
	uringLeftBehind = uringops.LeftBehind
	uringNoThread   = uringops.NoThread
)

// uringHelperOp runs "MODE OP ARGS" in the helper and returns the errno:
//
//	socket FAMILY TYPE PROTO  IORING_OP_SOCKET
//	openat PATH               IORING_OP_OPENAT, read-only
//
// For a MODE+enter mode the helper moves itself into the cgroup whose
// cgroup.procs is fd 3 after making the ring.
func uringHelperOp(args []string) (string, error) {
	if len(args) < 3 {
		return "", fmt.Errorf("uring takes MODE OP ARGS, got %q", args)
	}
	r, code, err := uringRing(args[0])
	if err != nil || code != 0 {
		return strconv.Itoa(code), err
	}
	var errno unix.Errno
	switch args[1] {
	case "socket":
		if len(args) != 5 {
			return "", fmt.Errorf("uring socket takes FAMILY TYPE PROTO")
		}
		var a [3]int
		for i := range a {
			if a[i], err = strconv.Atoi(args[2+i]); err != nil {
				return "", err
			}
		}
		fd, err := r.Socket(a[0], a[1]|unix.SOCK_CLOEXEC, a[2])
		if err == nil {
			unix.Close(fd)
		}
		errno = uringErrno(err)
	case "openat":
		fd, err := r.Openat(unix.AT_FDCWD, args[2], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		errno = uringErrno(err)
	default:
		return "", fmt.Errorf("unknown uring op %q", args[1])
	}
	if errno == 999 {
		return "", fmt.Errorf("uring %q: not an errno", args)
	}
	return strconv.Itoa(int(errno)), nil
}
