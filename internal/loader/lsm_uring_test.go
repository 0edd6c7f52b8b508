//go:build linux

package loader

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// runUring runs the net helper's io_uring ops (net_uring_test.go) in sb
// without a network namespace, and returns one errno per op and the pid.
// For MODE+enter ops the helper starts outside and moves itself into sb.
func runUring(t *testing.T, sb *sandbox, ops ...string) ([]syscall.Errno, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), netHelperEnv+"="+strings.Join(ops, ";"))
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
