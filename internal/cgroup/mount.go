package cgroup

import (
	"errors"
	"fmt"
	"os"

	"github.com/aigate-dev/aigate/internal/mountinfo"
)

// ErrNoCgroup2 means no cgroup v2 hierarchy is mounted.
var ErrNoCgroup2 = errors.New("no cgroup v2 hierarchy is mounted (mount one with: mount -t cgroup2 none /sys/fs/cgroup)")

// Mountpoint returns where the cgroup v2 hierarchy is mounted. Hybrid systems
// mount it at /sys/fs/cgroup/unified, pure v2 systems at /sys/fs/cgroup.
func Mountpoint() (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mounts: %w", err)
	}
	return parseMountinfo(string(data))
}

// parseMountinfo finds the cgroup2 mounts in a mountinfo text. A line it
// cannot read is skipped: it is a cgroup2 mount only if some other line
// says so too.
func parseMountinfo(data string) (string, error) {
	mounts, _ := mountinfo.Parse(data)
	var found []string
	for _, m := range mounts {
		if m.FSType == "cgroup2" {
			found = append(found, m.Point)
		}
	}
	for _, m := range found {
		if m == "/sys/fs/cgroup" {
			return m, nil
		}
	}
	if len(found) == 0 {
		return "", ErrNoCgroup2
	}
	return found[0], nil
}
