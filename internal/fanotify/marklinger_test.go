//go:build linux

package fanotify

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
)

// kernelMask is the mask the kernel holds for group on dir's inode, read
// from the group's fdinfo (0: no mark): what is really marked, whatever
// the table says.
func kernelMask(t *testing.T, group int, dir string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", group))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := "ino:" + strconv.FormatUint(st.Ino, 16) + " "
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "fanotify ") || !strings.Contains(line, want) {
			continue
		}
		for _, field := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(field, "mask:"); ok {
				m, err := strconv.ParseUint(v, 16, 64)
				if err != nil {
					t.Fatalf("fdinfo line %q: %v", line, err)
				}
				return m
			}
		}
	}
	return 0
}

// copyDirsFor makes dir the only copy directory for the test.
func copyDirsFor(t *testing.T, dir string) {
	old := copyDirs
	copyDirs = []string{dir}
	t.Cleanup(func() { copyDirs = old })
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// The copy directories' exec marks outlive the sandbox for MarkLinger, so
// that the next sandbox does not pay the kernel's walk of their cached
// entries again; a lingering mark still refuses a copy for the next
// sandbox, and goes once the time is up.
func TestExecMarkLingers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "copies")
	copyDirsFor(t, dir)
	e := newEnv(t, func(o *Options) { o.MarkLinger = 500 * time.Millisecond })
	e.copyBin(filepath.Join(e.bin, "mytool"))
	cp := e.copyBin(filepath.Join(dir, "renamed"))
	p := policy.Policy{DenyExec: rules("mytool")}

	s1 := e.sandbox(p)
	if kernelMask(t, e.b.group, dir)&unix.FAN_OPEN_EXEC_PERM == 0 {
		t.Fatalf("%s is not marked for execs while a sandbox needs it", dir)
	}
	if err := e.b.Remove(s1.ID); err != nil {
		t.Fatal(err)
	}
	if kernelMask(t, e.b.group, dir)&unix.FAN_OPEN_EXEC_PERM == 0 {
		t.Fatalf("%s lost its exec mark with the last sandbox: it should linger", dir)
	}
	s2 := e.sandbox(p)
	if got := e.run(s2, "exec", cp); got != "EPERM" {
		t.Fatalf("exec of the copy %s in the next sandbox: %s, want EPERM", cp, got)
	}
	e.event()
	if err := e.b.Remove(s2.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for kernelMask(t, e.b.group, dir) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still marked (mask %#x) long after the linger of 500ms", dir, kernelMask(t, e.b.group, dir))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := e.run(nil, "exec", cp); got != "ok" {
		t.Fatalf("exec of %s outside any sandbox: %s", cp, got)
	}
}

// A copy directory replaced while its mark lingers (the mark went with the
// old inode) is marked again for the next sandbox: the table must not
// take the path for marked.
func TestLingeringMarkReplacedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "copies")
	copyDirsFor(t, dir)
	e := newEnv(t, func(o *Options) { o.MarkLinger = time.Minute })
	e.copyBin(filepath.Join(e.bin, "mytool"))
	p := policy.Policy{DenyExec: rules("mytool")}

	s1 := e.sandbox(p)
	if err := e.b.Remove(s1.ID); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	cp := e.copyBin(filepath.Join(dir, "renamed"))
	s2 := e.sandbox(p)
	if kernelMask(t, e.b.group, dir)&unix.FAN_OPEN_EXEC_PERM == 0 {
		t.Fatalf("the new %s is not marked for execs", dir)
	}
	if got := e.run(s2, "exec", cp); got != "EPERM" {
		t.Fatalf("exec of the copy %s in the replaced directory: %s, want EPERM", cp, got)
	}
	e.event()
}
