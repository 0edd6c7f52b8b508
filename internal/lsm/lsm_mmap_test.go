//go:build linux

package lsm

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// mmapHelper runs the helper actions of this file inside a sandbox, the
// calls a dynamic loader makes to run a program it was handed: "mmapexec P"
// maps P PROT_READ|PROT_EXEC; "mprotectexec P" maps it PROT_READ, then makes
// the mapping executable; "mmapread P" only maps it PROT_READ; "mmapanon"
// maps anonymous memory PROT_EXEC.
func mmapHelper(args []string) error {
	if args[0] == "mmapserve" { // for each line N on stdin: N maps, median batch's ns per map
		return mmapServe(args[1])
	}
	if args[0] == "mmapanon" {
		b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err == nil {
			unix.Munmap(b)
		}
		return err
	}
	fd, err := unix.Open(args[1], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	prot := unix.PROT_READ
	if args[0] == "mmapexec" {
		prot |= unix.PROT_EXEC
	}
	b, err := unix.Mmap(fd, 0, 4096, prot, unix.MAP_PRIVATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(b)
	if args[0] == "mprotectexec" {
		return unix.Mprotect(b, unix.PROT_READ|unix.PROT_EXEC)
	}
	return nil
}

// expectExecDenied is expectDenied that also checks the op: an executable
// mapping is reported as an exec.
func expectExecDenied(t *testing.T, l *Backend, sb *sandbox, path string, rule uint32, args ...string) {
	t.Helper()
	code, pid := run(t, sb, args...)
	if code != exitEPERM {
		t.Errorf("%v: exit %d, want EPERM", args, code)
		return
	}
	ev := nextEvent(t, l)
	if ev.Kind != events.KindExec || ev.Op != events.OpExec || ev.Path != path || ev.Rule != rule ||
		int(ev.TGID) != pid || ev.CgroupID != sb.g.ID {
		t.Errorf("%v: event %+v, want exec/exec %s rule %d pid %d", args, ev, path, rule, pid)
	}
}

// TestLSMMmapExec: a PROT_EXEC mapping of a file that exec rules deny (by
// path, by name and by inode) fails with EPERM in mmap and in mprotect,
// with an exec event; other files and anonymous memory map executable, and
// outside the sandbox everything does.
func TestLSMMmapExec(t *testing.T) {
	dir := tempDir(t)
	tool := script(t, dir+"/bin/tool")
	curl := script(t, dir+"/bin2/curl")
	deep := script(t, dir+"/opt/curl/lib/libx.so") // beneath a component named curl
	wget := script(t, dir+"/bin5/wget")
	renamed := dir + "/other/renamed"
	if err := os.MkdirAll(dir+"/other", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(wget, renamed); err != nil {
		t.Fatal(err)
	}
	ok := script(t, dir+"/bin/fine")
	curlish := script(t, dir+"/bin2/libcurl.so.4")

	l := openLSM(t, dir+"/bin5")
	sb := addSandbox(t, l, compiled(
		ruleSpec{policy.AccessExec, "paths", tool},   // 1
		ruleSpec{policy.AccessExec, "names", "curl"}, // 2
		ruleSpec{policy.AccessExec, "names", "wget"}, // 3
	), policy.ModeEnforce)

	for _, op := range []string{"mmapexec", "mprotectexec"} {
		expectExecDenied(t, l, sb, tool, 1, op, tool)
		expectExecDenied(t, l, sb, curl, 2, op, curl)
		expectExecDenied(t, l, sb, deep, 2, op, deep)
		// A hard link under another name: caught by the inode.
		expectExecDenied(t, l, sb, renamed, 3, op, renamed)
		expectAllowed(t, sb, op, ok)
		expectAllowed(t, sb, op, curlish)
		for _, p := range []string{tool, curl, renamed} {
			expectAllowed(t, nil, op, p)
		}
	}
	// Reading (and mapping for reading) a denied file is not executing it.
	expectAllowed(t, sb, "mmapread", curl)
	expectAllowed(t, sb, "open", tool, "r")
	expectAllowed(t, sb, "mmapanon")
	noEvent(t, l)

	// Audit mode reports and allows.
	audit := addSandbox(t, l, compiled(ruleSpec{policy.AccessExec, "names", "curl"}), policy.ModeAudit)
	code, pid := run(t, audit, "mmapexec", curl)
	if code != 0 {
		t.Errorf("mmapexec %s in an audit sandbox: exit %d, want allowed", curl, code)
	}
	if ev := nextEvent(t, l); ev.Kind != events.KindExec || ev.Path != curl || !ev.Audit || int(ev.TGID) != pid {
		t.Errorf("audit event %+v, want exec %s audit pid %d", ev, curl, pid)
	}
	noEvent(t, l)
}

// TestLSMExecLoader is the bypass itself: the dynamic loader run as the
// program, with a denied binary as its argument. vmtest copies the host's
// ip with its libraries and loader into the guest; it is the dynamically
// linked binary copied under a denied name.
func TestLSMExecLoader(t *testing.T) {
	ip, err := exec.LookPath("ip")
	if err != nil {
		skipUnlessVM(t, "no ip binary to copy: "+err.Error())
	}
	interp, err := elfInterp(ip)
	if err != nil {
		skipUnlessVM(t, err.Error())
	}
	l := openLSM(t)
	dir := tempDir(t)
	curl := copyFile(t, ip, dir+"/bin/curl")
	allowed := copyFile(t, ip, dir+"/bin/iproute")
	sb := addSandbox(t, l, compiled(ruleSpec{policy.AccessExec, "names", "curl"}), policy.ModeEnforce)

	loaderRun := func(sb *sandbox, prog string) (int, int) {
		cmd := exec.Command(interp, prog, "-V")
		cmd.Stdout = io.Discard
		cmd.Stderr = os.Stderr
		if sb != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(sb.fd.Fd())}
		}
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), cmd.Process.Pid
		}
		if err != nil {
			t.Fatalf("%s %s: %v", interp, prog, err)
		}
		return 0, cmd.Process.Pid
	}

	expectExecDenied(t, l, sb, curl, 1, "exec", curl)
	code, pid := loaderRun(sb, curl)
	if code == 0 {
		t.Errorf("%s %s in the sandbox: exit 0, want the loader to fail", interp, curl)
	} else if ev := nextEvent(t, l); ev.Kind != events.KindExec || ev.Path != curl || ev.Rule != 1 || int(ev.TGID) != pid {
		t.Errorf("%s %s: event %+v, want exec %s rule 1 pid %d", interp, curl, ev, curl, pid)
	}
	if code, _ := loaderRun(sb, allowed); code != 0 {
		t.Errorf("%s %s in the sandbox: exit %d, want 0", interp, allowed, code)
	}
	if code, _ := loaderRun(nil, curl); code != 0 {
		t.Errorf("%s %s outside the sandbox: exit %d, want 0", interp, curl, code)
	}
	noEvent(t, l)
}

// skipUnlessVM skips, except in the vmtest guest, which provides what the
// test needs and where a skip would hide a broken setup.
func skipUnlessVM(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("AIGATE_VMTEST") == "1" {
		t.Fatal(reason)
	}
	// skip-ok: fails in the VM, where it must run, as above.
	t.Skip(reason)
}

// elfInterp returns the program interpreter (dynamic loader) of path.
func elfInterp(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil || len(b) < 2 {
				return "", errors.New(path + ": unreadable PT_INTERP")
			}
			return string(b[:len(b)-1]), nil
		}
	}
	return "", errors.New(path + " is statically linked")
}

func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

func mmapServe(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, _ := strconv.Atoi(in.Text())
		ns, err := bench.Batched(n, func() error {
			b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE)
			if err != nil {
				return err
			}
			return unix.Munmap(b)
		})
		if err != nil {
			return err
		}
		fmt.Println(strconv.FormatFloat(ns, 'f', 1, 64))
	}
	return nil
}
