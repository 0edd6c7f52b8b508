//go:build linux

package exechelper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// tiocstiProbeEnv makes the test binary, once exec'ed, try TIOCSTI on its
// stdin (its controlling terminal) and report what happened on stdout.
const tiocstiProbeEnv = "AIGATE_TEST_TIOCSTI_PROBE"

func init() {
	if os.Getenv(tiocstiProbeEnv) == "" {
		return
	}
	c := byte('#')
	_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	// The kernel reads cmd as an unsigned int: high bits must not get
	// TIOCSTI past a filter.
	_, _, eh := unix.Syscall(unix.SYS_IOCTL, 0, 1<<32|unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	var ws unix.Winsize
	_, _, e2 := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCGWINSZ, uintptr(unsafe.Pointer(&ws)))
	fmt.Printf("tiocsti=%d tiocgwinsz=%d high=%d\n", int(e), int(e2), int(eh))
	os.Exit(0)
}

// runOnTTY runs the test binary as a session leader on a new pty and
// returns its report. viaHelper starts it through the exec helper, as
// Start does, with the go-ahead (no Landlock domain, no seccomp filter but
// the helper's own) already in the pipe.
func runOnTTY(t *testing.T, viaHelper bool) (tiocsti, winsz, high syscall.Errno) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), tiocstiProbeEnv+"=1")
	if viaHelper {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := w.Write(append([]byte{GoByte}, "{}"...)); err != nil {
			t.Fatal(err)
		}
		w.Close()
		cmd.Env = append(cmd.Env, Env+"="+self, FDEnv+"=3")
		cmd.ExtraFiles = []*os.File{r}
	}
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	done := make(chan string, 1)
	go func() {
		var sb strings.Builder
		io.Copy(&sb, ptmx) // ends with EIO once the child is gone
		done <- sb.String()
	}()
	werr := make(chan error, 1)
	go func() { werr <- cmd.Wait() }()
	select {
	case err := <-werr:
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("probe did not finish")
	}
	// Read to EIO before closing: closing the master first threw away what
	// the probe wrote when the reader had not run yet (a flake under load).
	var out string
	select {
	case out = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("no EIO on the pty after the probe exited")
	}
	i := strings.Index(out, "tiocsti=")
	if i < 0 {
		t.Fatalf("no report from the probe: %q", out)
	}
	var a, b, c int
	if _, err := fmt.Sscanf(out[i:], "tiocsti=%d tiocgwinsz=%d high=%d", &a, &b, &c); err != nil {
		t.Fatalf("report %q: %v", out[i:], err)
	}
	return syscall.Errno(a), syscall.Errno(b), syscall.Errno(c)
}

func TestHelperDeniesTIOCSTI(t *testing.T) {
	// Without the helper, TIOCSTI on one's controlling terminal works
	// where dev.tty.legacy_tiocsti allows it: the attack is real there.
	// Where the kernel refuses it (EIO), the filter is checked all the
	// same: it answers EPERM before the kernel's own refusal is reached.
	plain, _, _ := runOnTTY(t, false)
	if plain != 0 {
		b, _ := os.ReadFile("/proc/sys/dev/tty/legacy_tiocsti")
		if !errors.Is(plain, unix.EIO) {
			t.Fatalf("TIOCSTI without the filter: %v", plain)
		}
		t.Logf("TIOCSTI is disabled on this kernel (legacy_tiocsti=%s): checking that the filter answers first", strings.TrimSpace(string(b)))
	}
	sti, winsz, high := runOnTTY(t, true)
	if !errors.Is(sti, unix.EPERM) {
		t.Errorf("TIOCSTI through the exec helper: errno %d (%v), want EPERM", int(sti), sti)
	}
	if !errors.Is(high, unix.EPERM) {
		t.Errorf("TIOCSTI with high bits in cmd through the exec helper: errno %d (%v), want EPERM", int(high), high)
	}
	if winsz != 0 {
		t.Errorf("TIOCGWINSZ through the exec helper: %v, want it to work", winsz)
	}
}
