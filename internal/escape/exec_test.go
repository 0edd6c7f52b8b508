//go:build linux

package escape

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestEscapeExecAlias: deny_exec ssh holds where the distribution installs
// an alias symlink to it (Debian's /usr/bin/slogin -> ssh), which once made
// the fanotify backend take ssh for a multi-call binary and leave it alone.
func TestEscapeExecAlias(t *testing.T) {
	if fi, err := os.Lstat("/usr/bin/slogin"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		testutil.SkipUnlessKernel(t, "no /usr/bin/slogin alias on this system (Debian's openssh-client has one)")
	}
	eachBackend(t, func(t *testing.T, b *box) {
		r := b.sh("/usr/bin/ssh -V && echo ran-ssh; slogin -V && echo ran-slogin")
		if strings.Contains(r.stdout, "ran-") {
			t.Fatalf("ssh ran:\n%s", r)
		}
		if _, ok := r.denied(events.OpExec, "ssh"); !ok {
			t.Errorf("no exec event for ssh:\n%s", r)
		}
	})
}

// TestEscapeExecCopy: a copy of a denied binary under another name, in
// /tmp or in the project (also written over a project file that existed
// at start, which fanotify had given an ignore mask), is refused on both backends with an exec event
// naming the copy and the original's rule: fanotify compares the size
// first and then SHA-256 in the agent (fanotify/copy.go); the lsm backend
// the size in bprm_copy and then the SHA-256 IMA computes
// (bpf_ima_file_hash, bpf/include/execcopy.h). Controls: reading the copy
// is allowed, a copy of an allowed program (aigate itself) runs, a
// different program padded to the denied binary's size runs (so its
// content was compared, not just its size), and the original runs outside
// the sandbox.
func TestEscapeExecCopy(t *testing.T) {
	curl, truePath := curlAndTrue(t)
	eachBackend(t, func(t *testing.T, b *box) {
		tmp := fmt.Sprintf("/tmp/aigate-copy-%d-%s", os.Getpid(), b.backend)
		t.Cleanup(func() { os.Remove(tmp); os.Remove(tmp + "-true"); os.Remove(tmp + "-size") })
		// A project file that existed at start (on fanotify an unrelated
		// file: an ignore mask), overwritten in place with the copy.
		b.write("build.sh", "#!/bin/sh\necho built\n")
		r := b.sh(fmt.Sprintf(`cp %[1]s %[2]s && cp %[1]s ./mycurl && sha256sum %[2]s >/dev/null && echo read-ok
%[2]s --version >/dev/null 2>&1 && echo ran-tmp
./mycurl --version >/dev/null 2>&1 && echo ran-proj
cat %[1]s > ./build.sh && chmod +x ./build.sh && ./build.sh --version >/dev/null 2>&1 && echo ran-overwritten
cp %[3]s %[2]s-true && %[2]s-true version >/dev/null && echo ran-true
cp %[4]s %[2]s-size && truncate -s $(stat -L -c %%s %[1]s) %[2]s-size && %[2]s-size && echo ran-size`, curl, tmp, machine.bin, truePath))
		for _, c := range []string{"read-ok", "ran-true", "ran-size"} {
			if !strings.Contains(r.stdout, c) {
				t.Fatalf("control %s failed:\n%s", c, r)
			}
		}
		for _, where := range []string{"tmp", "proj", "overwritten"} {
			if strings.Contains(r.stdout, "ran-"+where) {
				t.Errorf("the copy in %s ran:\n%s", where, r)
			}
		}
		for _, p := range []string{tmp, b.path("mycurl"), b.path("build.sh")} {
			if ev, ok := r.denied(events.OpExec, p); !ok || ev.RuleText != "curl" {
				t.Errorf("no exec event with rule curl for %s:\n%s", p, r)
			}
		}
		if out, err := b.outsideRun(curl + " --version"); err != nil {
			t.Errorf("curl outside the sandbox: %v\n%s", err, out)
		}
	})
}

// TestEscapeExecCopyAnywhere: a copy of a denied binary in a directory the
// user can write that no directory mark reported before (a subdirectory
// of /var/tmp, a second filesystem such as /run/user/UID or a data disk,
// here a tmpfs mounted for the test and owned by the user) is refused with
// an exec event naming the copy and curl's rule. On fanotify every
// exec-capable, read-write filesystem is marked for execs while such a
// sandbox lives (fanotify/execfs.go); both copies ran before. Controls:
// programs in ~/.local/bin, a venv's bin, node_modules/.bin and a tool
// directory on the second disk still run inside, and the copy runs
// outside the sandbox.
func TestEscapeExecCopyAnywhere(t *testing.T) {
	curl, truePath := curlAndTrue(t)
	eachBackend(t, func(t *testing.T, b *box) {
		vartmp := fmt.Sprintf("/var/tmp/aigate-anywhere-%d-%s", os.Getpid(), b.backend)
		t.Cleanup(func() { os.RemoveAll(vartmp) })
		b.mkdir(filepath.Join(vartmp, "sub"))
		disk := filepath.Join(b.home, "..", fmt.Sprintf("disk-%d-%s", os.Getpid(), b.backend))
		if err := os.MkdirAll(disk, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(disk) })
		opts := fmt.Sprintf("size=64m,mode=0755,uid=%d,gid=%d", machine.uid, machine.gid)
		if err := unix.Mount("tmpfs", disk, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			t.Fatalf("mount a tmpfs as a second disk: %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(disk, unix.MNT_DETACH) })
		toolDir := filepath.Join(disk, "opt", "tool", "bin")
		b.mkdir(toolDir)
		controls := []string{b.path("~/.local/bin/mytool"), b.path(".venv/bin/mytool"), filepath.Join(toolDir, "mytool")}
		for _, c := range controls {
			b.mkdir(filepath.Dir(c))
			if err := copyFile(truePath, c, 0o755); err != nil {
				t.Fatal(err)
			}
			b.chown(c)
		}
		script := b.write("node_modules/.bin/mytool", "#!/bin/sh\nexit 0\n")
		if err := os.Chmod(script, 0o755); err != nil {
			t.Fatal(err)
		}
		controls = append(controls, script)

		deep, onDisk := filepath.Join(vartmp, "sub", "x"), filepath.Join(toolDir, "x")
		r := b.sh(fmt.Sprintf(`cp %[1]s %[2]s && %[2]s --version >/dev/null 2>&1 && echo ran-deep
cp %[1]s %[3]s && %[3]s --version >/dev/null 2>&1 && echo ran-disk
for t in %[4]s; do "$t" && echo "control-ok $t"; done`, curl, deep, onDisk, strings.Join(controls, " ")))
		for _, c := range controls {
			if !strings.Contains(r.stdout, "control-ok "+c+"\n") {
				t.Errorf("control %s did not run:\n%s", c, r)
			}
		}
		for _, where := range []string{"deep", "disk"} {
			if strings.Contains(r.stdout, "ran-"+where) {
				t.Errorf("the copy (%s) ran:\n%s", where, r)
			}
		}
		for _, p := range []string{deep, onDisk} {
			if ev, ok := r.denied(events.OpExec, p); !ok || ev.RuleText != "curl" {
				t.Errorf("no exec event with rule curl for %s:\n%s", p, r)
			}
		}
		if out, err := b.outsideRun(onDisk + " --version"); err != nil {
			t.Errorf("the copy outside the sandbox: %v\n%s", err, out)
		}
	})
}

// TestEscapeExecCopyIgnoredDirs: the fanotify agent spares the execs from
// directories only root can write their round trip (an ignore mark in its
// exec group, internal/fanotify/execignore.go), asked for when a program
// there runs. A sandboxed user's copy of a denied binary is still refused
// with an event in a root-owned directory that holds a file of the user's
// (written over with the copy) and in one the user's group may write,
// after programs there ran in the same sandbox. Neither directory
// qualifies (TestExecIgnoreQualifies); a change to one that did takes its
// mark away (TestExecIgnoreFollowsChanges).
func TestEscapeExecCopyIgnoredDirs(t *testing.T) {
	curl, truePath := curlAndTrue(t)
	eachBackend(t, func(t *testing.T, b *box) {
		base := fmt.Sprintf("/var/tmp/aigate-ignored-%d-%s", os.Getpid(), b.backend)
		t.Cleanup(func() { os.RemoveAll(base) })
		userDir, groupDir := filepath.Join(base, "userfile"), filepath.Join(base, "groupdir")
		for _, d := range []string{userDir, groupDir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(groupDir, 0, int(machine.gid)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(groupDir, 0o775); err != nil {
			t.Fatal(err)
		}
		tool, prog := filepath.Join(userDir, "tool"), filepath.Join(groupDir, "prog")
		for _, p := range []string{tool, prog} {
			if err := copyFile(truePath, p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		b.chown(tool)
		cp := filepath.Join(groupDir, "x")
		r := b.sh(fmt.Sprintf(`for i in 1 2 3; do %[2]s; %[3]s; done; sleep 0.5
cat %[1]s > %[2]s || echo write-failed-userfile
%[2]s --version >/dev/null 2>&1 && echo ran-userfile
cp %[1]s %[4]s || echo write-failed-groupdir
%[4]s --version >/dev/null 2>&1 && echo ran-groupdir
true`, curl, tool, prog, cp))
		if strings.Contains(r.stdout, "write-failed") {
			// Not the route under test: the user could not even write.
			t.Fatalf("the copy could not be written:\n%s", r)
		}
		for _, where := range []string{"userfile", "groupdir"} {
			if strings.Contains(r.stdout, "ran-"+where) {
				t.Errorf("the copy (%s) ran:\n%s", where, r)
			}
		}
		for _, p := range []string{tool, cp} {
			if ev, ok := r.denied(events.OpExec, p); !ok || ev.RuleText != "curl" {
				t.Errorf("no exec event with rule curl for %s:\n%s", p, r)
			}
		}
	})
}

// curlAndTrue are the paths of curl (the denied binary the copy tests
// copy) and true (an allowed one of another size).
func curlAndTrue(t *testing.T) (curl, truePath string) {
	t.Helper()
	for _, p := range []struct {
		name string
		path *string
	}{{"curl", &curl}, {"true", &truePath}} {
		found, err := exec.LookPath(p.name)
		if err != nil {
			testutil.SkipUnlessKernel(t, p.name+" is not installed")
		}
		*p.path = found
	}
	return curl, truePath
}
