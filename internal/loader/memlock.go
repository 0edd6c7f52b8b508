//go:build linux

package loader

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

var (
	memlockOnce sync.Once
	memlockErr  error
)

// removeMemlock lifts RLIMIT_MEMLOCK where the kernel still charges BPF
// maps and programs to it (before Linux 5.11) and does nothing on newer
// kernels, which charge them to the memory cgroup.
//
// cilium/ebpf's rlimit package does the same, but it decides in its init
// by creating a map (and, through its first bpf(2), probing for a BPF
// token): every process of this one binary that links the loader paid
// both at start-up, including each client of the agent and each exec
// helper, which never touch BPF. Here the question is asked only by the
// code about to load something.
func removeMemlock() error {
	memlockOnce.Do(func() { memlockErr = liftMemlock() })
	return memlockErr
}

func liftMemlock() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil && memcgAccounted(unix.ByteSliceToString(u.Release[:])) {
		return nil
	}
	inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &inf); err != nil {
		return fmt.Errorf("remove the memlock limit (kernels before 5.11 charge BPF memory to it; needs CAP_SYS_RESOURCE): %w", err)
	}
	return nil
}

// memcgAccounted reports whether a kernel release ("6.8.0-51-generic")
// is 5.11 or later, where BPF memory is charged to the memory cgroup and
// RLIMIT_MEMLOCK no longer applies. A release it cannot read counts as
// older, so the limit is lifted rather than left in the way.
func memcgAccounted(release string) bool {
	fields := strings.SplitN(release, ".", 3)
	if len(fields) < 2 {
		return false
	}
	major, err := strconv.Atoi(fields[0])
	if err != nil {
		return false
	}
	digits := strings.IndexFunc(fields[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(fields[1])
	}
	minor, err := strconv.Atoi(fields[1][:digits])
	if err != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 11
}
