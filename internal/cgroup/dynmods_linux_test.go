package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/mountinfo"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// Lines as Linux 6.18 prints them: a hybrid host (cgroup2 beside the v1
// controllers), a systemd host with its usual options, and a container's
// read-only view.
const (
	hybridOff = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	hybridOn  = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,favordynmods\n"
	systemdOn = `25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,favordynmods,memory_recursiveprot
99 25 0:22 / /tmp/other rw,relatime - cgroup2 cgroup2 rw,nsdelegate,favordynmods,memory_recursiveprot
`
	containerRO = "800 700 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
)

func parseMounts(t *testing.T, text string) []mountinfo.Mount {
	t.Helper()
	m, err := mountinfo.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDynmodsState(t *testing.T) {
	for _, tc := range []struct {
		name, text, point string
		on, ro            bool
		// what a change must set, to turn it on and off
		setOn, setOff []string
	}{
		{"hybrid, off", hybridOff, "/sys/fs/cgroup/unified", false, false, []string{"favordynmods"}, nil},
		{"hybrid, on", hybridOn, "/sys/fs/cgroup/unified", true, false, []string{"favordynmods"}, nil},
		// The other options are set again, or the kernel would clear
		// them with favordynmods (a reconfiguration sets every flag).
		{"systemd, on", systemdOn, "/sys/fs/cgroup", true, false,
			[]string{"nsdelegate", "memory_recursiveprot", "favordynmods"}, []string{"nsdelegate", "memory_recursiveprot"}},
		{"container, read-only", containerRO, "/sys/fs/cgroup", false, true, []string{"nsdelegate", "favordynmods"}, []string{"nsdelegate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := dynmodsState(parseMounts(t, tc.text))
			if err != nil {
				t.Fatal(err)
			}
			if s.Mountpoint != tc.point || s.On != tc.on || s.ReadOnly != tc.ro {
				t.Errorf("got %s on=%v ro=%v, want %s on=%v ro=%v", s.Mountpoint, s.On, s.ReadOnly, tc.point, tc.on, tc.ro)
			}
			if got := s.options(true); !slices.Equal(got, tc.setOn) {
				t.Errorf("options to turn it on: %q, want %q", got, tc.setOn)
			}
			if got := s.options(false); !slices.Equal(got, tc.setOff) {
				t.Errorf("options to turn it off: %q, want %q", got, tc.setOff)
			}
		})
	}
}

func TestDynmodsStateNoCgroup2(t *testing.T) {
	_, err := dynmodsState(parseMounts(t, "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"))
	if !errors.Is(err, ErrNoCgroup2) {
		t.Fatalf("got %v, want ErrNoCgroup2", err)
	}
}

// A read-only mount is refused before the kernel is asked, with what to do.
func TestDynmodsReadOnlyRefused(t *testing.T) {
	s, err := dynmodsState(parseMounts(t, containerRO))
	if err != nil {
		t.Fatal(err)
	}
	err = s.check()
	if err == nil || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), "on the host") {
		t.Fatalf("check of a read-only mount: %v, want a read-only error saying to set it on the host", err)
	}
	s, _ = dynmodsState(parseMounts(t, hybridOff))
	if err := s.check(); err != nil {
		t.Fatalf("check of a read-write mount: %v", err)
	}
}

func TestSetErrorSaysWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{unix.EPERM, "run it with sudo, on the host"},
		{unix.ENOSYS, "Linux 6.0 or later"},
		{unix.EROFS, "set favordynmods on the host"},
		{unix.EBUSY, "device or resource busy"},
	} {
		err := setError("/sys/fs/cgroup", "reconfigure", tc.err)
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "/sys/fs/cgroup") {
			t.Errorf("setError(%v) = %v, want it wrapped, naming the mount and saying %q", tc.err, err, tc.want)
		}
	}
}

// What ReadFavorDynmods reads is the kernel's state: a cgroup2 mount made
// now, in a private mount namespace, shows the same option (it lives on
// the hierarchy's root, not on a mount). Reading only: a test must not
// change the machine's option (on Linux 6.18 part of it stays until the
// next boot once set; docs/performance.md).
func TestReadFavorDynmodsMatchesNewMount(t *testing.T) {
	testutil.RequireRoot(t)
	s, err := ReadFavorDynmods()
	if err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The new namespace is this thread's only: it ends with the test's
	// goroutine, which never unlocks it.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		t.Fatalf("unshare the mount namespace: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", dir, "cgroup2", 0, ""); err != nil {
		t.Fatalf("mount cgroup2: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	data, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := mountinfo.Parse(string(data))
	if err != nil {
		t.Fatal(err)
	}
	var fresh *mountinfo.Mount
	for i, m := range mounts {
		if m.Point == dir || m.Point == filepath.Clean(dir) {
			fresh = &mounts[i]
		}
	}
	if fresh == nil || fresh.FSType != "cgroup2" {
		t.Fatalf("no cgroup2 mount at %s in this thread's mountinfo", dir)
	}
	if got := fresh.SuperHas(FavorDynmods); got != s.On {
		t.Fatalf("ReadFavorDynmods says on=%v, a new mount's options %q", s.On, fresh.SuperOptions)
	}
	// Asking for the state it is in changes nothing and asks nothing.
	if err := SetFavorDynmods(s.On); err != nil {
		t.Fatalf("SetFavorDynmods(%v) in that state: %v", s.On, err)
	}
}
