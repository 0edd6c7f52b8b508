//go:build linux

package escape

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// pty32Env names a prebuilt pty32 (testdata/pty32, GOARCH=386) to use
// instead of building one; pty32VM is where `make vmtest` puts it in the
// guest (--bin bin/aigate-pty32), which has no Go toolchain.
const (
	pty32Env = "AIGATE_PTY32"
	pty32VM  = "/usr/local/bin/aigate-pty32"
)

// TestEscapeCompatPty: a pseudo-terminal a 32-bit program of the sandbox
// makes is its own, as a 64-bit program's is (TestEscapeNewTerminal's
// "inside"). A 32-bit program's ioctl goes through the kernel's compat
// entry, which since Linux 6.8 (and in the stable kernels that took the
// change, Debian's 6.1.192 among them) calls the LSM hook file_ioctl_compat
// instead of file_ioctl: the LSM backend has to record the unlock there
// too, or file_open refuses the slave of the program's own pty with a read
// event (before: `pty32: open /dev/pts/N: permission denied`). The user's
// other terminals stay out whatever the program's width: file_open checks
// them, not the ioctl (TestEscapeOtherTerminal, TestEscapeNewTerminal).
func TestEscapeCompatPty(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		// skip-ok: CI, its guests and this host are amd64; elsewhere a 386 program is no compat program.
		t.Skipf("a 386 program runs through the compat entry on amd64, not %s", runtime.GOARCH)
	}
	eachBackend(t, func(t *testing.T, b *box) {
		bin := pty32(t)
		// Held a second, as TestEscapeOtherTerminal's own pty is: a
		// number taken again by another test's pty outside would be a
		// false kill on fanotify (threat model).
		r := b.sh(bin + " 1s; echo survived")
		for _, want := range []string{"pty32-ok", "survived"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("a pseudo-terminal a 32-bit program made did not work (%s):\n%s", want, r)
			}
		}
		if _, ok := r.denied(events.OpRead, "/dev/pts/"); ok {
			t.Errorf("a read event for a 32-bit program's own pseudo-terminal:\n%s", r)
		}
		if _, ok := r.denied(events.OpOpen, "/dev/pts/"); ok {
			t.Errorf("an open event for a 32-bit program's own pseudo-terminal:\n%s", r)
		}
	})
}

// pty32 returns the 32-bit pty32 program, executable by the test user:
// $AIGATE_PTY32, else pty32VM in the vmtest guest, else built here; it
// fails the test unless the file is a 32-bit x86 program.
func pty32(t *testing.T) string {
	t.Helper()
	p := os.Getenv(pty32Env)
	switch {
	case p != "":
	case os.Getenv("AIGATE_VMTEST") == "1":
		p = pty32VM
	default:
		p = filepath.Join(machine.dir, "aigate-pty32")
		if _, err := os.Stat(p); err != nil {
			build := exec.Command("go", "build", "-trimpath", "-o", p, "./testdata/pty32")
			build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=386")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build testdata/pty32 for 386: %v\n%s", err, out)
			}
		}
	}
	f, err := elf.Open(p)
	if err != nil {
		t.Fatalf("the 32-bit pty program (%s; in the VM pass --bin bin/aigate-pty32, make pty32): %v", p, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS32 || f.Machine != elf.EM_386 {
		t.Fatalf("%s is %v %v, not a 32-bit x86 program", p, f.Class, f.Machine)
	}
	return p
}
