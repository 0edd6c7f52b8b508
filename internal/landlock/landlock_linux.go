//go:build linux

package landlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rulesetAttr is struct landlock_ruleset_attr up to ABI 6; the kernel
// accepts a shorter struct, so older ABIs get their own prefix of it.
type rulesetAttr struct {
	handledFS  uint64
	handledNet uint64
	scoped     uint64
}

// pathBeneathAttr is struct landlock_path_beneath_attr (packed: 12 bytes).
type pathBeneathAttr struct {
	allowed  uint64
	parentFD int32
}

// ErrUnavailable is Restrict's error when the kernel has no Landlock or
// it is disabled (not in the lsm= boot parameter).
var ErrUnavailable = errors.New("Landlock is not available")

// ABI returns the Landlock ABI version of the running kernel, 0 when it
// has none or Landlock is disabled.
func ABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// Restrict confines the calling thread (and what it executes) to rs, as
// far as the kernel's ABI allows; the caller must have set no_new_privs
// and locked the thread it execs from. Paths of rules that do not exist
// are skipped. It returns the ABI used; ErrUnavailable when the kernel has
// no Landlock.
func Restrict(rs Ruleset) (int, error) {
	abi := ABI()
	if abi == 0 {
		return 0, ErrUnavailable
	}
	eff := rs.Effective(abi)
	attr := rulesetAttr{handledFS: eff.HandledFS, scoped: eff.Scoped}
	size := unsafe.Sizeof(attr)
	if abi < 6 {
		size = unsafe.Offsetof(attr.scoped)
	}
	if abi < 4 {
		size = unsafe.Offsetof(attr.handledNet)
	}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if errno != 0 {
		return abi, fmt.Errorf("create Landlock ruleset (ABI %d): %w", abi, errno)
	}
	defer unix.Close(int(fd))
	for _, r := range eff.Rules {
		if err := addRule(int(fd), r); err != nil {
			return abi, err
		}
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, restrictFlags(abi), 0); errno != 0 {
		return abi, fmt.Errorf("enter Landlock domain (ABI %d): %w", abi, errno)
	}
	return abi, nil
}

// restrictFlags are landlock_restrict_self's flags for ABI abi. From ABI 7
// (Linux 6.15) the kernel reports refusals to audit, by default only those
// of the executable that made the domain: here that is aigate's helper,
// and every refusal worth reporting is the command's, after its exec. So
// the domain logs after exec too (package llaudit reads the records;
// without audit enabled nothing is logged and nothing costs).
func restrictFlags(abi int) uintptr {
	if abi < 7 {
		return 0
	}
	return unix.LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON
}

func addRule(rulesetFD int, r Rule) error {
	fd, err := unix.Open(r.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EACCES) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("Landlock rule %s: %w", r.Path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("Landlock rule %s: %w", r.Path, err)
	}
	attr := pathBeneathAttr{allowed: r.Access, parentFD: int32(fd)}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		attr.allowed &= accessFile
		if attr.allowed == 0 {
			return nil
		}
	}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(rulesetFD), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&attr)), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("Landlock rule %s: %w", r.Path, errno)
	}
	return nil
}

// CreateMissing makes the directories of opts.Create that do not exist
// (relative ones beneath opts.Home), before Restrict makes the home
// read-only.
func CreateMissing(opts Options) error {
	for _, d := range opts.Create {
		if !filepath.IsAbs(d) {
			if opts.Home == "" {
				continue
			}
			d = filepath.Join(opts.Home, d)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// OSDirs is the DirLister of the real filesystem.
type OSDirs struct{}

// ReadDir is os.ReadDir.
func (OSDirs) ReadDir(dir string) ([]os.DirEntry, error) { return os.ReadDir(dir) }

// IsTempDir tells whether dir is sticky and writable by everyone, as /tmp.
func (OSDirs) IsTempDir(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir() && fi.Mode()&os.ModeSticky != 0 && fi.Mode().Perm()&0o002 != 0
}
