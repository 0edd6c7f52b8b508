package cgroup

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/mountinfo"
)

// FavorDynmods is the cgroup v2 mount option that keeps
// cgroup_threadgroup_rwsem's readers on their slow path for good, so that a
// write to cgroup.procs (moving a process into a sandbox) no longer waits
// for an RCU grace period (5 to 16 ms on a 2-CPU machine, the largest step
// of starting a sandbox through the agent), at the cost of an atomic
// operation in every fork, thread start and exit on the machine
// (docs/performance.md measures both). It lives on the hierarchy's root,
// shared by every cgroup2 mount and namespace: setting it is machine-wide,
// and a reboot clears it. Linux 6.0 and later.
const FavorDynmods = "favordynmods"

// ErrNoFavorDynmods means the kernel does not know the option (before 6.0).
var ErrNoFavorDynmods = errors.New("this kernel has no favordynmods option (it needs Linux 6.0 or later)")

// DynmodsState is what mountinfo says of the cgroup v2 hierarchy.
type DynmodsState struct {
	Mountpoint string
	On         bool     // favordynmods is set
	ReadOnly   bool     // the mount is read-only (a container's view): the option cannot be changed through it
	super      []string // the hierarchy's other options, which a change must set again
}

// ReadFavorDynmods reports whether the cgroup v2 hierarchy is mounted with
// favordynmods.
func ReadFavorDynmods() (DynmodsState, error) {
	mounts, err := mountinfo.Read()
	if err != nil && len(mounts) == 0 {
		return DynmodsState{}, err
	}
	return dynmodsState(mounts)
}

// dynmodsState finds the cgroup v2 mount Mountpoint would return.
func dynmodsState(mounts []mountinfo.Mount) (DynmodsState, error) {
	var found []mountinfo.Mount
	for _, m := range mounts {
		if m.FSType == "cgroup2" {
			found = append(found, m)
		}
	}
	if len(found) == 0 {
		return DynmodsState{}, ErrNoCgroup2
	}
	m := found[0]
	for _, f := range found {
		if f.Point == "/sys/fs/cgroup" {
			m = f
		}
	}
	s := DynmodsState{Mountpoint: m.Point, On: m.SuperHas(FavorDynmods), ReadOnly: m.Has("ro")}
	for _, o := range m.SuperOptions {
		// rw and ro are the superblock's flags, which a reconfiguration
		// keeps; every other option of cgroup2 is reset to what it is
		// given, so each must be given again.
		if o != "rw" && o != "ro" && o != FavorDynmods {
			s.super = append(s.super, o)
		}
	}
	return s, nil
}

// options is what a reconfiguration must set for favordynmods to be on
// (or off) and every other option of the hierarchy to stay as it is.
func (s DynmodsState) options(on bool) []string {
	opts := slices.Clone(s.super)
	if on {
		opts = append(opts, FavorDynmods)
	}
	return opts
}

// SetFavorDynmods turns favordynmods on or off, keeping the hierarchy's
// other options (nsdelegate, memory_recursiveprot, ...), and checks in
// mountinfo that the kernel did it. It needs CAP_SYS_ADMIN in the initial
// user and cgroup namespaces. It changes the machine, not a namespace.
func SetFavorDynmods(on bool) error {
	s, err := ReadFavorDynmods()
	if err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	if s.On == on {
		return nil
	}
	if err := reconfigure(s.Mountpoint, s.options(on)); err != nil {
		return err
	}
	after, err := ReadFavorDynmods()
	if err != nil {
		return err
	}
	if after.On != on {
		// The kernel applies a cgroup2 reconfiguration only from the
		// initial cgroup namespace, and says nothing otherwise.
		return fmt.Errorf("remount %s with %s: the kernel left it %s (run it from the initial cgroup namespace: not in a container)", s.Mountpoint, strings.Join(s.options(on), ","), onOff(after.On))
	}
	return nil
}

// check refuses what cannot work before the kernel is asked.
func (s DynmodsState) check() error {
	if s.ReadOnly {
		return fmt.Errorf("the cgroup v2 mount at %s is read-only (a container's view of the host's cgroups?): set favordynmods on the host, where it is mounted read-write", s.Mountpoint)
	}
	return nil
}

// reconfigure sets exactly opts on the superblock of the mount at point,
// with the mount API's reconfiguration (fspick): unlike mount(8)'s
// remount, which copies the current options back in, and unlike
// mount(2)'s MS_REMOUNT, which would reset the mount's own flags
// (nosuid, noexec) along with the superblock's.
func reconfigure(point string, opts []string) error {
	fd, err := unix.Fspick(unix.AT_FDCWD, point, unix.FSPICK_CLOEXEC|unix.FSPICK_NO_AUTOMOUNT)
	if err != nil {
		return setError(point, "open the mount for reconfiguration", err)
	}
	defer unix.Close(fd)
	for _, o := range opts {
		if k, v, ok := strings.Cut(o, "="); ok {
			err = unix.FsconfigSetString(fd, k, v)
		} else {
			err = unix.FsconfigSetFlag(fd, o)
		}
		if err != nil {
			if o == FavorDynmods && errors.Is(err, unix.EINVAL) {
				return ErrNoFavorDynmods
			}
			return setError(point, "set option "+o, err)
		}
	}
	if _, _, errno := unix.Syscall6(unix.SYS_FSCONFIG, uintptr(fd), unix.FSCONFIG_CMD_RECONFIGURE, 0, 0, 0, 0); errno != 0 {
		return setError(point, "reconfigure", errno)
	}
	return nil
}

// setError says what to do about a refused reconfiguration.
func setError(point, what string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("cgroup v2 mount %s: %s: %w (it needs root in the initial namespaces: run it with sudo, on the host)", point, what, err)
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("cgroup v2 mount %s: %s: %w (this kernel has no mount API; favordynmods needs Linux 6.0 or later)", point, what, err)
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("cgroup v2 mount %s: %s: %w (read-only: set favordynmods on the host)", point, what, err)
	}
	return fmt.Errorf("cgroup v2 mount %s: %s: %w", point, what, err)
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
