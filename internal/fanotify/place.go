//go:build linux

package fanotify

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
)

// Placing an opener by its cgroup id. Every permission event on the
// machine, sandboxed or not, first asks which sandbox its thread is in.
// /proc/TID/cgroup answers with a path, but reading it costs an open, a
// read and a close, and the kernel formats a line per hierarchy under
// cgroup_mutex: 2.8-5.4 us here, about half of an outside opener's round
// trip. Since Linux 6.13 a pidfd of the thread (PIDFD_THREAD, 6.9) tells
// its cgroup v2 id (PIDFD_GET_INFO): 0.9 us with pidfd_open and close,
// one ioctl when the thread's pidfd is kept from its earlier events
// (threadCgroupID). A cgroup's id is never reused
// and its ancestors never change (cgroup2 renames only within a parent),
// so what the id's path says once (which sandbox's cgroup it is in or
// below, or none) holds for as long as the registered sandboxes stay the
// same: placeByID caches it, and Add and Remove empty the cache in the
// same critical section that changes the sandboxes, so a cached answer is
// always the one sandboxAt would give now. Anything that fails (an older
// kernel, a thread gone, an id the cgroup mount cannot open) falls back
// to /proc, as before.

// maxPlaced bounds the cache: the machine's busy cgroups, a few hundred.
const maxPlaced = 4096

// placeByID returns the sandbox of tid by its cgroup id, and false when it
// cannot tell (the caller reads /proc instead).
func (b *Backend) placeByID(tid int) (*sandbox, bool) {
	if b.noPlaceByID.Load() {
		return nil, false
	}
	id, ok := b.threadCgroupID(tid)
	if !ok {
		return nil, false
	}
	b.mu.RLock()
	s, ok := b.placedIDs[id]
	b.mu.RUnlock()
	if ok {
		return s, true
	}
	rel, ok := b.cgroupRel(id)
	if !ok {
		return nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s = b.sandboxAtLocked(rel)
	if len(b.placedIDs) >= maxPlaced {
		clear(b.placedIDs)
	}
	b.placedIDs[id] = s
	return s, true
}

// threadCgroupID is tid's cgroup v2 id. A kernel without thread pidfds or
// PIDFD_GET_INFO turns the path off for good.
//
// The pidfds are kept, by tid (pidfdCache): an opener that opens again
// costs one ioctl instead of pidfd_open, ioctl and close (at ~0.5 us a
// syscall on these vCPUs). A kept pidfd is never taken for another thread
// with the same number: a tid is not given to a new thread before the old
// one is released, and the pidfd of a released thread answers ESRCH, which
// drops it and opens the tid again. The lock is held across the ioctl so
// that no kept descriptor is closed (and its number reused) under it.
func (b *Backend) threadCgroupID(tid int) (uint64, bool) {
	c := &b.pidfds
	c.mu.Lock()
	defer c.mu.Unlock()
	if fd, ok := c.fds[tid]; ok {
		if id, err := pidfdCgroupID(fd); err == nil {
			return id, true
		}
		unix.Close(fd)
		delete(c.fds, tid)
	}
	fd, err := unix.PidfdOpen(tid, unix.PIDFD_THREAD)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			b.noPlaceByID.Store(true)
		}
		return 0, false
	}
	id, err := pidfdCgroupID(fd)
	if err != nil {
		unix.Close(fd)
		if !errors.Is(err, unix.ESRCH) {
			b.noPlaceByID.Store(true)
		}
		return 0, false
	}
	if c.fds == nil || len(c.fds) >= maxPidfds {
		c.closeLocked()
	}
	c.fds[tid] = fd
	return id, true
}

// pidfdCgroupID asks a pidfd for its thread's cgroup v2 id.
func pidfdCgroupID(fd int) (uint64, error) {
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_CGROUPID}
	if err := unix.IoctlPidfdInfo(fd, &info); err != nil {
		return 0, err
	}
	if info.Mask&unix.PIDFD_INFO_CGROUPID == 0 {
		return 0, unix.EOPNOTSUPP
	}
	return info.Cgroupid, nil
}

// pidfdTask is the process id and real uid of thread tid, from its kept
// pidfd; false when none is kept or it cannot tell (fillTask reads /proc).
func (b *Backend) pidfdTask(tid int) (tgid, uid uint32, ok bool) {
	c := &b.pidfds
	c.mu.Lock()
	defer c.mu.Unlock()
	fd, kept := c.fds[tid]
	if !kept {
		return 0, 0, false
	}
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_PID | unix.PIDFD_INFO_CREDS}
	if err := unix.IoctlPidfdInfo(fd, &info); err != nil {
		return 0, 0, false
	}
	const want = unix.PIDFD_INFO_PID | unix.PIDFD_INFO_CREDS
	if info.Mask&want != want {
		return 0, 0, false
	}
	return info.Tgid, info.Ruid, true
}

// maxPidfds bounds the pidfds kept: one descriptor each.
const maxPidfds = 1024

// pidfdCache keeps the pidfds of recent openers' threads, by tid.
type pidfdCache struct {
	mu  sync.Mutex
	fds map[int]int
}

func (c *pidfdCache) closeLocked() {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = make(map[int]int, 64)
}

func (c *pidfdCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
}

// cgroupRel is the path of cgroup id relative to the cgroup2 mount, as in
// /proc/TID/cgroup: the cgroup opened by its kernfs file handle, then
// named by /proc/self/fd.
func (b *Backend) cgroupRel(id uint64) (string, bool) {
	if b.cgRootFD < 0 {
		return "", false
	}
	fd, err := cgroup.OpenByID(b.cgRootFD, id, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return "", false
	}
	defer unix.Close(fd)
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", false
	}
	if p == b.cgRoot {
		return "/", true
	}
	rel, ok := strings.CutPrefix(p, b.cgRoot)
	if !ok || !strings.HasPrefix(rel, "/") {
		return "", false
	}
	return rel, true
}
