//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
)

// adopterXattr names, on a sandbox's cgroup directory, the pid of the
// process that adopted it. The pid in the directory's name is its
// creator's, an agent that died while the kernel went on enforcing the
// sandbox from pinned state; without this mark the next sweep would take
// the adopted sandbox for one nobody enforces and kill it. (cgroupfs keeps
// trusted.* xattrs, writable by root only.)
const adopterXattr = "trusted.aigate.adopter"

// Adopt takes over the sandbox described by info (an enforce.Sandbox the
// backend found still enforced in its pinned state, Policy as claimed):
// its cgroup must still exist with the same id. The returned Sandbox is
// what Create returns, added to backend: Close kills what runs in it,
// stops enforcing it and removes the cgroup. Sweeps leave it alone while
// this process lives.
func Adopt(info enforce.Sandbox, backend enforce.Backend) (*Sandbox, error) {
	if backend == nil {
		return nil, errors.New("adopt sandbox: no backend")
	}
	g, err := cgroup.Open(info.CgroupPath)
	if err != nil {
		return nil, fmt.Errorf("adopt sandbox %s: %w", info.Name, err)
	}
	if g.ID != info.CgroupID {
		return nil, fmt.Errorf("adopt sandbox %s: cgroup %s has id %d, not %d (it was recreated)", info.Name, info.CgroupPath, g.ID, info.CgroupID)
	}
	if err := unix.Setxattr(g.Path, adopterXattr, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return nil, fmt.Errorf("adopt sandbox %s: mark cgroup %s: %w", info.Name, g.Path, err)
	}
	return &Sandbox{Info: info, group: g, backend: backend, added: true}, nil
}

// adopterAlive reports whether the sandbox cgroup at path was adopted by a
// process that still runs.
func adopterAlive(path string) bool {
	buf := make([]byte, 16)
	n, err := unix.Getxattr(path, adopterXattr, buf)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(string(buf[:n]))
	return err == nil && pid > 0 && pidAlive(pid)
}
