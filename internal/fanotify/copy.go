//go:build linux

package fanotify

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/resolve"
)

// deny_exec means the program, not its file name: a copy of a denied binary
// under another name (cp /usr/bin/curl /tmp/x) is refused too. A sandbox
// records the size of each deny_exec binary when it starts; an exec whose
// file has one of those sizes is hashed (SHA-256), and refused when its
// contents are a denied binary's (hashed on the first size match). Other
// execs pay a map lookup on the size they already have from fstat. A copy
// is seen where fanotify reports the exec: every filesystem, also one
// mounted while the sandbox runs (execfs.go), and, for a filesystem the
// kernel refused to mark, the marked project and home trees and the
// directories in copyDirs (their direct children only: a mark covers one
// directory).

// copyDirs are the world-writable places a copy is most likely put, marked
// by directory too: the filesystem marks may be refused (execfs.go).
var copyDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

// execCopy is one deny_exec binary a copy is compared with. Its hash is
// computed on the first exec of a file of its size, not when the sandbox
// starts: a stat needs no open, and an open of a binary another fanotify
// listener marks waits for that listener.
type execCopy struct {
	path string
	rule policy.RuleID

	once sync.Once
	sum  [32]byte
	ok   bool
}

func (e *execCopy) hash() ([32]byte, bool) {
	e.once.Do(func() {
		fd, err := unix.Open(e.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil {
			e.ok = hashFD(fd, st.Size, &e.sum)
		}
	})
	return e.sum, e.ok
}

// execSums records the size of each deny_exec binary of c: named, the
// files exec name rules resolve to (resolve.Executables), and the files
// exec path rules name.
func execSums(c *policy.Compiled, named []resolve.File) map[int64][]*execCopy {
	paths, _ := resolve.Paths(c.Exec)
	files := append(named[:len(named):len(named)], paths...)
	out := map[int64][]*execCopy{}
	seen := map[inodeKey]bool{}
	for _, f := range files {
		var st unix.Stat_t
		if f.IsDir || unix.Stat(f.Path, &st) != nil || st.Size <= 0 || st.Size > maxLoaderSize || seen[keyOf(&st)] {
			continue
		}
		seen[keyOf(&st)] = true
		out[st.Size] = append(out[st.Size], &execCopy{path: f.Path, rule: f.Rule})
	}
	return out
}

// hashFD hashes size bytes of fd from offset 0 without moving its offset.
func hashFD(fd int, size int64, sum *[32]byte) bool {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for off := int64(0); off < size; {
		n, err := unix.Pread(fd, buf, off)
		if err != nil || n <= 0 {
			return false
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	h.Sum(sum[:0])
	return true
}

// maybeCopy reports whether a file of size bytes could be a copy of a
// deny_exec binary: copyOf would hash it.
func (p *plan) maybeCopy(size int64) bool { return len(p.copies[size]) > 0 }

// copyOf returns the rule of the deny_exec binary whose copy fd (size
// bytes) is, or 0. Fail closed: a file of a denied binary's size that
// cannot be hashed, or a denied binary that cannot be (removed since the
// sandbox started), counts as a copy of it: an exec that cannot be told
// apart from a denied program is refused.
func (p *plan) copyOf(fd int, size int64) policy.RuleID {
	cands := p.copies[size]
	if len(cands) == 0 {
		return 0
	}
	var sum [32]byte
	if !hashFD(fd, size, &sum) {
		return cands[0].rule
	}
	for _, c := range cands {
		if s, ok := c.hash(); !ok || s == sum {
			return c.rule
		}
	}
	return 0
}

// mayCopyExec reports whether an FAN_OPEN_PERM event needs copyExec: the
// file has the size of a deny_exec binary, is not one by inode (exec), and
// no FAN_OPEN_EXEC_PERM mark reports its execs: neither its directory's
// nor its filesystem's (execfs.go). A file that FAN_OPEN_EXEC_PERM reports
// as well was decided there: once, also in audit mode.
func (b *Backend) mayCopyExec(p *pending, f *facts, exec policy.RuleID, path string) bool {
	if exec != 0 || !p.sb.plan.maybeCopy(f.size) {
		return false
	}
	if f.statOK && b.fsexec.reports(f.key.dev, filepath.Dir(path)) {
		return false
	}
	return b.marks.mask(filepath.Dir(path))&unix.FAN_OPEN_EXEC_PERM == 0
}

// copyExec is copyOf for an FAN_OPEN_PERM event that mayCopyExec, when the
// opener may be executing the file (an exec is reported as an open too):
// reading a copy (cp, sha256sum) stays allowed, as reading the original
// is, but only when /proc/TID/syscall shows a call other than execve. A
// thread whose call cannot be read, or that stayed "running" until the
// deadline, is taken to be executing it (a rare cp of a copy refused).
func (b *Backend) copyExec(p *pending, size int64) policy.RuleID {
	if in, known := b.sysc.inExec(p.tid, p.deadline); known && !in {
		return 0
	}
	return p.sb.plan.copyOf(p.fd, size)
}

// loaderCopy is copyOf for an FAN_OPEN_PERM event of a file the size of a
// deny_exec binary opened by a dynamic loader outside an exec (`ld.so
// ./x`: the loader opens the copy for reading, no exec mark reports it).
// Seen only where opens are reported: the project and home trees, when a
// read or write name rule marks them. As loaderOpen, not knowing whether
// the loader is inside execve refuses.
func (b *Backend) loaderCopy(p *pending, size int64) policy.RuleID {
	if !b.ldso.isLoader(p.tid, p.fd) {
		return 0
	}
	if in, known := b.sysc.inExec(p.tid, p.deadline); in && known {
		return 0
	}
	return p.sb.plan.copyOf(p.fd, size)
}

// markCopyDirs marks copyDirs for execs when the policy has binaries to
// compare with.
func (pl *planner) markCopyDirs() {
	if len(pl.p.copies) == 0 {
		return
	}
	for _, d := range copyDirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			pl.p.marks[d] |= unix.FAN_OPEN_EXEC_PERM | unix.FAN_EVENT_ON_CHILD
		}
	}
}
