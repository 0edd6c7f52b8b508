//go:build linux

package lsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/testutil/scratchops"
)

// scratchHelperEnv makes the test binary a scratchServe process.
const scratchHelperEnv = "AIGATE_TEST_SCRATCH_HELPER"

// init runs scratchServe before TestMain when the test binary is started
// as that helper. A helper started only once the buffers are held could
// not even exec: the kernel's open of the binary would be denied too.
func init() {
	if os.Getenv(scratchHelperEnv) == "1" {
		os.Exit(scratchServe())
	}
}

// scratchServe performs each line of stdin, "open PATH" or "unlink PATH",
// and answers with its errno (0: done).
func scratchServe() int {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		op, path, _ := strings.Cut(in.Text(), " ")
		var err error
		switch op {
		case "open":
			var fd int
			if fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
				unix.Close(fd)
			}
		case "unlink":
			err = unix.Unlink(path)
		default:
			err = unix.EINVAL
		}
		var errno unix.Errno
		if err != nil && !errors.As(err, &errno) {
			errno = unix.EIO
		}
		fmt.Println(int(errno))
	}
	return 0
}

// scratchHelper is a scratchServe process running in sb.
type scratchHelper struct {
	pid int
	in  io.Writer
	out *bufio.Scanner
}

func startScratchHelper(t *testing.T, sb *sandbox) *scratchHelper {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), scratchHelperEnv+"=1")
	cmd.Stderr = os.Stderr
	h := testutil.StartHeld(t, cmd, int(sb.fd.Fd()))
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("scratch helper: %v", err)
		}
	})
	return &scratchHelper{pid: cmd.Process.Pid, in: h.In, out: bufio.NewScanner(h.Out)}
}

// do performs op on path in the helper and returns its errno.
func (h *scratchHelper) do(t *testing.T, op, path string) syscall.Errno {
	t.Helper()
	if _, err := fmt.Fprintf(h.in, "%s %s\n", op, path); err != nil {
		t.Fatal(err)
	}
	if !h.out.Scan() {
		t.Fatalf("scratch helper: no answer to %s %s: %v", op, path, h.out.Err())
	}
	n, err := strconv.Atoi(h.out.Text())
	if err != nil {
		t.Fatalf("scratch helper: %q", h.out.Text())
	}
	return syscall.Errno(n)
}

// TestLSMScratch checks the scratch-buffer discipline of lsm.c
// (bpf/include/scratch.h), as TestNetUnixScratch does for sockunix.c: a
// preemption inside a BPF program cannot be arranged, so the buffers are
// held from user space instead. With every buffer of every CPU held, a
// sandboxed open (of a file whose allowed verdict is not cached yet,
// verdict.h: a cached one needs no buffer and is allowed) and an unlink
// that the rules allow are denied (rule 0, no path) rather than checked
// with a buffer another task owns; outside the
// sandbox nothing changes; with one buffer free, the programs use it and
// give it back; and after allowed and denied operations every buffer is
// free again.
func TestLSMScratch(t *testing.T) {
	l := openLSM(t)
	dir := tempDir(t)
	p := compiled(ruleSpec{policy.AccessRead, "paths", dir + "/secret.txt"})
	sb := addSandbox(t, l, p, policy.ModeEnforce)
	ok, secret := touch(t, dir+"/ok.txt"), touch(t, dir+"/secret.txt")
	m := scratchops.Buffers[loader.LSMScratch]{Map: l.obj.Objects().ScratchMap, Owner: func(v *loader.LSMScratch) *uint64 { return &v.Owner }}
	slots := m.Slots()

	if code, _ := run(t, sb, "open", ok, "r"); code != 0 {
		t.Fatalf("open(%s) in the sandbox: exit %d, want allowed", ok, code)
	}
	if code, _ := run(t, sb, "open", secret, "r"); code != exitEPERM {
		t.Fatalf("open(%s) in the sandbox: exit %d, want EPERM", secret, code)
	}
	if ev := nextEvent(t, l); ev.Path != secret || ev.Rule != 1 {
		t.Errorf("open(%s): event %+v, want rule 1", secret, ev)
	}
	m.Check(t, "after an allowed and a denied open", 0, 0)

	h := startScratchHelper(t, sb)
	if e := h.do(t, "open", ok); e != 0 {
		t.Fatalf("open(%s) in the sandbox helper: errno %d", ok, e)
	}
	t.Cleanup(func() { m.Set(t, slots, 0) })
	m.Set(t, slots, scratchops.Stranger)
	victim := touch(t, dir+"/victim.txt")
	// Files no sandbox opened yet: ok's allowed verdict is cached
	// (verdict.h) and needs no buffer.
	fresh, fresh2 := touch(t, dir+"/fresh.txt"), touch(t, dir+"/fresh2.txt")
	if e := h.do(t, "open", ok); e != 0 {
		t.Errorf("open(%s) in the sandbox with every buffer held, its verdict cached: errno %d, want allowed", ok, e)
	}
	for _, tc := range []struct {
		op, path string
		evop     events.Op
	}{
		{"open", fresh, events.OpRead},
		{"unlink", victim, events.OpWrite},
	} {
		if e := h.do(t, tc.op, tc.path); e != syscall.EPERM {
			t.Errorf("%s(%s) in the sandbox with every buffer held: errno %d, want EPERM", tc.op, tc.path, e)
			continue
		}
		ev := nextEvent(t, l)
		if ev.Kind != events.KindFile || ev.Op != tc.evop || ev.Rule != 0 || ev.Path != "" || int(ev.TGID) != h.pid {
			t.Errorf("%s(%s) with every buffer held: event %+v, want file/%s rule 0, no path", tc.op, tc.path, ev, tc.evop)
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("unlink denied, yet: %v", err)
	}
	if f, err := os.Open(ok); err != nil {
		t.Errorf("open(%s) outside the sandbox with every buffer held: %v", ok, err)
	} else {
		f.Close()
	}
	m.Check(t, "every buffer held", slots, scratchops.Stranger)

	m.Set(t, slots, 0)
	m.Set(t, slots-1, scratchops.Stranger)
	if e := h.do(t, "open", fresh2); e != 0 {
		t.Errorf("open(%s) in the sandbox with one buffer free: errno %d, want allowed", fresh2, e)
	}
	m.Check(t, "one buffer free", slots-1, scratchops.Stranger)

	m.Set(t, slots, 0)
	if e := h.do(t, "unlink", victim); e != 0 {
		t.Errorf("unlink(%s) in the sandbox: errno %d, want allowed", victim, e)
	}
	m.Check(t, "after the last run", 0, 0)
	noEvent(t, l)
}
