//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/mountinfo"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestDenyExecCopyAnywhere: a copy of a deny_exec binary is refused, with
// an exec event naming the copy and the original's rule, in places no
// directory mark reports: a directory two levels below a temporary
// directory, and another filesystem (a tmpfs mounted after the backend
// opened, as a second disk), and the first through a bind mount. Before
// the filesystem exec marks (execfs.go) all ran. Controls: an allowed program on that filesystem runs inside,
// the copy runs outside the sandbox, and the marks go with the last
// sandbox that needed them when they are not to linger
// (TestExecFSMarksLinger has the linger).
func TestDenyExecCopyAnywhere(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MarkLinger = -1 })
	base := filepath.Dir(e.home)
	e.copyBin(filepath.Join(e.bin, "mytool"))
	deep := e.copyBin(filepath.Join(base, "srv", "a", "b", "renamed"))
	disk := filepath.Join(base, "disk")
	if err := os.MkdirAll(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount a tmpfs as a second disk: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(disk, unix.MNT_DETACH) })
	onDisk := e.copyBin(filepath.Join(disk, "opt", "tool", "bin", "renamed"))
	allowed := e.write(filepath.Join(disk, "opt", "tool", "bin", "allowed"), "#!/bin/sh\nexit 0\n")
	if err := os.Chmod(allowed, 0o755); err != nil {
		t.Fatal(err)
	}

	// A bind mount is another mount of the same filesystem: a mount mark
	// would miss it, the filesystem's mark does not.
	bound := filepath.Join(base, "bound")
	if err := os.MkdirAll(bound, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(filepath.Join(base, "srv"), bound, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bound, unix.MNT_DETACH) })
	viaBind := filepath.Join(bound, "a", "b", "renamed")

	s := e.sandbox(policy.Policy{DenyExec: rules("mytool")})
	for _, c := range []string{deep, onDisk, viaBind} {
		if got := e.run(s, "exec", c); got != "EPERM" {
			t.Errorf("sandboxed exec of the copy %s: %s, want EPERM", c, got)
			continue
		}
		if ev := e.event(); ev.Kind != events.KindExec || ev.Path != c || ruleText(s, ev) != "mytool" {
			t.Errorf("event %+v, want exec of %s by rule mytool", ev, c)
		}
		if got := e.run(nil, "exec", c); got != "ok" {
			t.Errorf("exec of %s outside the sandbox: %s", c, got)
		}
	}
	if got := e.run(s, "exec", allowed); got != "ok" {
		t.Errorf("sandboxed exec of an allowed program on the second disk: %s", got)
	}
	e.noEvent()

	var st unix.Stat_t
	if err := unix.Stat(disk, &st); err != nil {
		t.Fatal(err)
	}
	if !e.b.fsexec.covers(st.Dev) {
		t.Fatalf("the second disk (dev %d) is not marked for execs", st.Dev)
	}
	if err := e.b.Remove(s.ID); err != nil {
		t.Fatal(err)
	}
	if e.b.fsexec.covers(st.Dev) {
		t.Error("the filesystem exec marks outlived the last sandbox that needed them")
	}
}

// TestExecFilesystems: which mounts are marked for execs.
func TestExecFilesystems(t *testing.T) {
	ms, err := mountinfo.Parse(`27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 254:0 /home /srv/home rw,noexec - ext4 /dev/vda rw
25 24 0:23 / /dev/shm rw,nosuid,nodev,noexec - tmpfs tmpfs rw
26 27 0:24 / /run/user/1000 rw,nosuid,nodev - tmpfs tmpfs rw
28 27 0:25 / /snap/core/1 ro - squashfs /dev/loop0 ro
29 27 0:26 / /data rw,noexec - xfs /dev/sdb rw
31 27 0:26 / /data-bin rw - xfs /dev/sdb rw
22 27 0:21 / /proc rw - proc proc rw
`)
	if err != nil {
		t.Fatal(err)
	}
	got := execFilesystems(ms)
	want := map[uint64]string{
		unix.Mkdev(254, 0): "/",
		unix.Mkdev(0, 24):  "/run/user/1000",
		unix.Mkdev(0, 26):  "/data-bin", // exec-capable through one mount of two
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for dev, point := range want {
		if got[dev] != point {
			t.Errorf("device %d: marked through %q, want %q", dev, got[dev], point)
		}
	}
}

// TestLoaderExecIgnored: with every filesystem marked for execs, the
// kernel's open of a program's interpreter would be a second round trip
// per exec on the machine; the loaders get an ignore mask, unless a
// sandbox protects one. Exec of a program through its loader stays
// allowed inside, and a deny_exec binary run through ld.so stays refused
// (TestDenyExecThroughLoader). The mask goes when a sandbox's policy
// names the loader.
func TestLoaderExecIgnored(t *testing.T) {
	var loaderEvents atomic.Int32
	var real string
	e := newEnv(t, func(o *Options) {
		o.allInWorkers = true
		o.beforeDecide = func(p *pending) {
			if path, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(p.fd)); path == real {
				loaderEvents.Add(1)
			}
		}
	})
	f, err := os.Open("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	interp := ptInterp(f)
	f.Close()
	if interp == "" {
		t.Fatal("/bin/true names no interpreter")
	}
	var st unix.Stat_t
	if err := unix.Stat(interp, &st); err != nil {
		t.Fatal(err)
	}
	if real, err = filepath.EvalSymlinks(interp); err != nil {
		t.Fatal(err)
	}
	e.copyBin(filepath.Join(e.bin, "mytool"))
	denied := filepath.Join(e.bin, "mytool")
	if f, err := os.OpenFile(denied, os.O_APPEND|os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	} else if _, err := f.Write([]byte{0}); err != nil || f.Close() != nil {
		t.Fatal(err)
	}
	s := e.sandbox(policy.Policy{DenyExec: rules("mytool")})
	ignored := func() bool {
		e.b.marks.mu.Lock()
		defer e.b.marks.mu.Unlock()
		return e.b.marks.ignored[keyOf(&st)] != ""
	}
	if !ignored() {
		t.Errorf("the loader %s has no ignore mask: every dynamic exec is two round trips", interp)
	}
	// In the exec group too, where the filesystem marks are.
	e.b.fsexec.mu.RLock()
	inExecGroup := e.b.fsexec.files[real]
	e.b.fsexec.mu.RUnlock()
	if !inExecGroup {
		t.Errorf("the loader %s has no ignore mask in the exec group", real)
	}
	if got := e.run(s, "exec", "/bin/true"); got != "ok" {
		t.Errorf("sandboxed exec of /bin/true: %s", got)
	}
	if n := loaderEvents.Load(); n != 0 {
		t.Errorf("the loader's exec reached a decision %d times, want 0 (ignored)", n)
	}
	// A sandbox whose policy names the loader (here deny_read, which
	// leaves dynamic programs running) takes the mask away before its
	// command starts: a mask would silence the loader's events.
	e.sandbox(policy.Policy{DenyRead: rules(interp)})
	if ignored() {
		t.Errorf("the loader %s kept its ignore mask while a sandbox's policy names it", interp)
	}
	e.b.fsexec.mu.RLock()
	inExecGroup = e.b.fsexec.files[real]
	e.b.fsexec.mu.RUnlock()
	if inExecGroup {
		t.Errorf("the loader %s kept its exec group ignore mask while a sandbox's policy names it", interp)
	}
}

// TestDenyExecCopyOnLaterMount: a filesystem mounted while the sandbox
// runs (a USB disk) is marked for execs once the mount table reports the
// change, and a copy there is refused with an event. Without the watcher
// it stayed unmarked until the next sandbox started, and the copy ran.
func TestDenyExecCopyOnLaterMount(t *testing.T) {
	e := newEnv(t, nil)
	e.copyBin(filepath.Join(e.bin, "mytool"))
	s := e.sandbox(policy.Policy{DenyExec: rules("mytool")})
	disk := filepath.Join(filepath.Dir(e.home), "usb")
	if err := os.MkdirAll(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount a tmpfs as a USB disk: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(disk, unix.MNT_DETACH) })
	var st unix.Stat_t
	if err := unix.Stat(disk, &st); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !e.b.fsexec.covers(st.Dev) {
		if time.Now().After(deadline) {
			t.Fatal("a filesystem mounted while the sandbox runs is not marked for execs after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := e.copyBin(filepath.Join(disk, "renamed"))
	if got := e.run(s, "exec", c); got != "EPERM" {
		t.Fatalf("sandboxed exec of the copy on the later mount: %s, want EPERM", got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != c || ruleText(s, ev) != "mytool" {
		t.Errorf("event %+v, want exec of %s by rule mytool", ev, c)
	}
}

// TestDenyExecCopyThroughLoader: a copy of a deny_exec binary run through
// the dynamic loader (ld.so ./renamed), where opens are reported (the
// project, marked for a read name rule), is refused as an exec of the
// original's rule. Before, only the denied file itself was recognised and
// the copy ran. Controls: the copy read with cat-like open stays allowed,
// and a same-size other file run through the loader is not refused as a
// copy.
func TestDenyExecCopyThroughLoader(t *testing.T) {
	e := newEnv(t, nil)
	bin := e.copyBin(filepath.Join(e.bin, "mytool"))
	ld := interpOf(t, bin)
	cp := e.copyBin(filepath.Join(e.project, "sub", "renamed"))
	other := e.copyBin(filepath.Join(e.project, "sub", "other"))
	data, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(other, data, 0o755); err != nil {
		t.Fatal(err)
	}
	s := e.sandbox(policy.Policy{DenyRead: rules(".env"), DenyExec: rules("mytool")})
	if got := e.run(s, "cmd", ld, other); got != "ok" {
		t.Errorf("sandboxed %s of a same-size other program: %q, want ok", ld, got)
	}
	got := e.run(s, "cmd", ld, cp)
	if !strings.Contains(got, "Operation not permitted") {
		t.Fatalf("sandboxed %s %s: %q, want Operation not permitted", ld, cp, got)
	}
	if ev := e.event(); ev.Kind != events.KindExec || ev.Path != cp || ruleText(s, ev) != "mytool" {
		t.Errorf("event %+v, want exec of %s by rule mytool", ev, cp)
	}
	if got := e.run(s, "open", cp, "r"); got != "ok" {
		t.Errorf("read of the copy: %s", got)
	}
	if got := e.run(nil, "cmd", ld, cp); got != "ok" {
		t.Errorf("%s %s outside the sandbox: %q", ld, cp, got)
	}
	e.noEvent()
}
