//go:build linux

package refused

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/landlock"
)

// OSHost is Host on this machine, for an agent in the initial pid and user
// namespaces (as it must be to place processes by pid). Mount is the
// cgroup v2 mount point.
type OSHost struct {
	Mount string
	mntNS uint32
	usrNS uint64
}

// NewOSHost reads the agent's own namespaces.
func NewOSHost(mount string) (*OSHost, error) {
	var mnt, usr unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &mnt); err != nil {
		return nil, fmt.Errorf("read own mount namespace: %w", err)
	}
	if err := unix.Stat("/proc/self/ns/user", &usr); err != nil {
		return nil, fmt.Errorf("read own user namespace: %w", err)
	}
	return &OSHost{Mount: mount, mntNS: uint32(mnt.Ino), usrNS: usr.Ino}, nil
}

func (h *OSHost) Lstat(path string) (landlock.Inode, error) { return landlock.OSStat{}.Lstat(path) }

func (h *OSHost) HasACL(path string) bool {
	_, err := unix.Lgetxattr(path, "system.posix_acl_access", nil)
	return !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP)
}

func (h *OSHost) Resolve(path string) (string, error) { return filepath.EvalSymlinks(path) }

func (h *OSHost) Dir(tid uint32, fd int32) (string, error) {
	link := fmt.Sprintf("/proc/%d/cwd", tid)
	if fd != atFDCWD {
		link = fmt.Sprintf("/proc/%d/fd/%d", tid, fd)
	}
	d, err := os.Readlink(link)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(d) { // "pipe:[...]", or a directory since deleted
		return "", fmt.Errorf("%s: %q is no directory", link, d)
	}
	return d, nil
}

func (h *OSHost) MntNS() uint32 { return h.mntNS }

// Process reads /proc/PID: status for the ids and capabilities, the
// directory's owner for dumpability, ns/user, and the cgroup.
func (h *OSHost) Process(pid int32) (Process, error) {
	dir := "/proc/" + strconv.Itoa(int(pid))
	var p Process
	var st, ns unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return p, err
	}
	p.OwnerUID = st.Uid
	if err := unix.Stat(dir+"/ns/user", &ns); err != nil {
		return p, err
	}
	p.InitUserNS = ns.Ino == h.usrNS
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return p, err
	}
	if err := parseStatus(status, &p); err != nil {
		return p, fmt.Errorf("%s/status: %w", dir, err)
	}
	cg, err := cgroup.ProcessCgroup(int(pid))
	if err != nil {
		return p, err
	}
	p.Cgroup = filepath.Join(h.Mount, cg)
	// The same process still? Its /proc directory, read again, is the
	// one read first (a pid reused meanwhile has a new one).
	var again unix.Stat_t
	if err := unix.Stat(dir, &again); err != nil || again.Ino != st.Ino {
		return p, fmt.Errorf("pid %d: gone", pid)
	}
	return p, nil
}
