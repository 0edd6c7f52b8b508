//go:build linux

package fanotify

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FAN_OPEN_PERM does not say how the file is being opened: the event's fd is
// our own open with our flags. The opener, however, is blocked inside its
// system call until we answer, so /proc/TID/syscall shows the call number and
// its register arguments as the kernel saw them at entry. Registers of a
// thread blocked in the kernel cannot be changed by another thread (ptrace
// needs a ptrace-stop), so this is not racy for open, openat, creat and
// open_by_handle_at, whose flags are a register. openat2 passes its flags in
// user memory that a sibling thread could rewrite after the kernel copied
// it, and io_uring opens show io_uring_enter or an io-wq worker: those, and
// anything else unrecognised, count as opens for writing, which fails closed
// for deny_write and changes nothing for deny_read.

// accessKind is what the blocked thread is doing with the file.
type accessKind uint8

const (
	accessRead    accessKind = iota + 1
	accessWrite              // flags ask for writing or truncation
	accessUnknown            // not an open we can read: treated as a write
)

// syscallTable maps a system call number to the index of its flags argument,
// or to -1 for calls that always write (creat) and -2 for calls that only
// read (execve and friends, whose opens are reported as FAN_OPEN_PERM too).
type syscallTable map[int]int

const (
	alwaysWrite = -1
	neverWrite  = -2
)

var syscalls = map[string]syscallTable{
	"amd64": {2: 1, 257: 2, 85: alwaysWrite, 304: 2, 59: neverWrite, 322: neverWrite, 134: neverWrite},
	"arm64": {56: 2, 265: 2, 221: neverWrite, 281: neverWrite},
}[runtime.GOARCH]

// openAccess reads how thread tid is opening the file it is blocked on,
// waiting out a "running" thread until deadline (blocked).
func (c *syscallFiles) openAccess(tid int, deadline time.Time) accessKind {
	line, err := c.blocked(tid, deadline)
	if err != nil {
		return accessUnknown
	}
	return parseSyscall(line, syscalls)
}

// openAccessOnce is openAccess from a single read of /proc/TID/syscall,
// for the reader: false when the thread was "running" (woken, see
// blocked), which only a worker may wait out. A read that fails is
// final, as in blocked: accessUnknown.
func (c *syscallFiles) openAccessOnce(tid int) (accessKind, bool) {
	var buf [256]byte
	n, err := c.read(tid, buf[:])
	if err != nil {
		return accessUnknown, true
	}
	line := string(buf[:n])
	if strings.HasPrefix(line, "running") {
		return accessUnknown, false
	}
	return parseSyscall(line, syscalls), true
}

// A "running" thread is read again after syscallBackoff, doubled each
// time up to syscallMaxPause, until the event's own deadline
// (DecisionTimeout after it was read), when the reaper would deny it
// anyway. A shorter patience of its own (200 ms, once) refused read-only
// opens as writes under load: with 16 openers of one deny_write file and
// the machine at load 20, a woken opener was still "running" after 200 ms
// in 2 of 31 runs of TestDenyWriteConcurrentReads (1 to 8 opens of 8,000
// refused each time), and every refusal was that; no read failed and no
// line parsed as a write.
const (
	syscallBackoff  = 16 * time.Microsecond
	syscallMaxPause = time.Millisecond
)

// errRunning: the thread was still "running" at the deadline.
var errRunning = errors.New("thread still running at the decision deadline")

// blocked reads /proc/TID/syscall of a thread blocked in a permission
// event. The kernel answers "running" for a thread that is not asleep at
// that instant, and a blocked opener is woken now and then although its
// own answer has not come: all waiters of a fanotify group sleep on one
// queue, and every answer wakes them all to check theirs. Such a thread
// goes back to sleep as soon as it gets a CPU, which on a loaded machine
// can take hundreds of milliseconds and more if answers keep waking it, so
// a "running" answer is read again until deadline; past it, errRunning,
// which the caller refuses (TestDenyWriteConcurrentReads,
// TestDenyWriteLongRunningReader).
func (c *syscallFiles) blocked(tid int, deadline time.Time) (string, error) {
	pause := syscallBackoff
	var buf [256]byte // "NR" and 8 hex words: under 200 bytes
	for {
		n, err := c.read(tid, buf[:])
		if err != nil {
			return "", err
		}
		data := string(buf[:n])
		if !strings.HasPrefix(data, "running") {
			return data, nil
		}
		if !time.Now().Before(deadline) {
			return "", errRunning
		}
		time.Sleep(min(pause, time.Until(deadline)))
		pause = min(2*pause, syscallMaxPause)
	}
}

// parseSyscall decodes a /proc/TID/syscall line: "NR ARG0 ... ARG5 SP PC".
// It runs on the reader for every deny_write file opened in a sandbox,
// while the opener waits: the fields are found in place (asciiFields),
// where strings.Fields allocated a slice per line (0.27 us of the round
// trip here, bench/results.md).
func parseSyscall(line string, table syscallTable) accessKind {
	var f [7]string
	if asciiFields(line, f[:]) < len(f) {
		return accessUnknown // "running" or "-1 SP PC": not in a system call
	}
	return decodeSyscall(f[:], table)
}

// decodeSyscall is the access of a /proc/TID/syscall line split into its
// first seven fields or more.
func decodeSyscall(f []string, table syscallTable) accessKind {
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return accessUnknown
	}
	idx, ok := table[nr]
	switch {
	case !ok:
		return accessUnknown
	case idx == alwaysWrite:
		return accessWrite
	case idx == neverWrite:
		return accessRead
	}
	flags, err := strconv.ParseUint(strings.TrimPrefix(f[1+idx], "0x"), 16, 64)
	if err != nil {
		return accessUnknown
	}
	return accessFromFlags(flags)
}

// asciiFields stores the first len(out) fields of line, separated by runs
// of ASCII white space, in out and returns how many it stored: the first
// fields of strings.Fields(line) for the kernel's ASCII lines, without
// allocating.
func asciiFields(line string, out []string) int {
	n := 0
	for i := 0; i < len(line) && n < len(out); {
		for i < len(line) && asciiSpace(line[i]) {
			i++
		}
		start := i
		for i < len(line) && !asciiSpace(line[i]) {
			i++
		}
		if i > start {
			out[n] = line[start:i]
			n++
		}
	}
	return n
}

func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// accessFromFlags: O_TRUNC destroys the content even with O_RDONLY.
func accessFromFlags(flags uint64) accessKind {
	if flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0 {
		return accessWrite
	}
	return accessRead
}

func (a accessKind) String() string {
	switch a {
	case accessRead:
		return "read"
	case accessWrite:
		return "write"
	case accessUnknown:
		return "unknown"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}
