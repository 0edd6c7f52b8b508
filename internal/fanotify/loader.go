//go:build linux

package fanotify

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/resolve"
)

// The dynamic loader run as the program (`ld.so /usr/bin/curl`) is an exec
// of ld.so, which is allowed; ld.so then open()s curl for reading and maps
// it PROT_EXEC, so curl's FAN_OPEN_EXEC_PERM never fires, and fanotify has
// no mmap permission event. What it does report is the open: deny_exec
// files are marked for FAN_OPEN_PERM too (marks.go), and a sandboxed open of
// one whose opener is a dynamic loader is refused as an exec (decide.go).
// Other readers (cat, cp, sha256sum) are allowed, as by the LSM backend.
//
// "The opener is a dynamic loader" is decided on /proc/TID/exe, the file its
// process runs. The thread is blocked in open(2) until we answer, so its
// process cannot exec something else meanwhile; /proc/TID/exe is stable.
// It counts as a loader when it is, by inode, the ELF interpreter (PT_INTERP)
// of a system binary, of the protected binary itself (exactly the loader
// that would run it), or a standard loader path; a hard link or rename of
// ld.so is the same inode. A copy is another inode: it counts when its size
// and SHA-256 are those of a known loader (`cp ld.so /tmp/x`, a memfd copy).
// A loader the process wrote itself, or a patched copy, is not recognised.

// loaderGlobs are where the loaders of the common ABIs live. Symbolic links
// (/lib64 -> usr/lib64, ld-linux-x86-64.so.2 -> ...) are followed.
var loaderGlobs = []string{
	"/lib/ld-*.so*", "/lib64/ld-*.so*", "/lib/*-linux-*/ld-*.so*",
	"/usr/lib/ld-*.so*", "/usr/lib64/ld-*.so*", "/usr/lib/*-linux-*/ld-*.so*",
	"/lib/ld-musl-*.so.1", "/lib/libc.musl-*.so.1",
}

// interpSources are binaries whose interpreter is the system's loader.
var interpSources = []string{"/bin/sh", "/usr/bin/env"}

const (
	maxLoaders     = 64       // distinct loader inodes remembered
	maxLoaderSize  = 32 << 20 // larger files are not hashed
	maxInterpCache = 4096     // protected binaries whose interpreter was read
)

// loaders is the set of dynamic loaders known to the backend. It only grows:
// an ld.so replaced by a package upgrade may still be the exe of a running
// process.
type loaders struct {
	mu     sync.RWMutex
	keys   map[inodeKey]bool     // loader inodes
	sums   map[int64][][32]byte  // loader contents by size, to recognise copies
	interp map[inodeKey]inodeKey // protected binary -> its interpreter (zero: none)

	globs []string        // loaderGlobs; tests point them elsewhere
	found globResult      // what globs matched, and the directories that says
	local resolve.LocalFS // which devices keep directory times (cachedFS)
}

func newLoaders() *loaders {
	return &loaders{keys: map[inodeKey]bool{}, sums: map[int64][][32]byte{}, interp: map[inodeKey]inodeKey{}, globs: loaderGlobs}
}

// refresh learns the standard loaders and the interpreters of the system's
// shell and of bins, the deny_exec binaries of a sandbox being added.
func (l *loaders) refresh(bins []string) {
	for _, p := range l.loaderPaths() {
		l.learn(p)
	}
	for _, p := range append(append([]string(nil), interpSources...), bins...) {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) == nil {
			l.interpreterOf(keyOf(&st), f)
		}
		f.Close()
	}
}

// Globbing the loaders lists /usr/lib/x86_64-linux-gnu (thousands of
// names) for every sandbox. What the globs match changes only when one of
// the directories they list changes: its stamp (walkcache.go: device,
// inode, size, link count, mtime, ctime; stat'ed by path, so a directory
// replaced or mounted over differs; times older than racyMargin; trusted
// filesystems only). A name that stays, but leads elsewhere (a symbolic
// link switched, a file mounted over it), is learnt again on every
// refresh: learn opens each path anew, and the set of loaders only grows.

// globResult is what loader globs matched, and the stamps of the
// directories the globs listed (missing: a zero stamp).
type globResult struct {
	paths []string
	dirs  map[string]dirStamp
	ok    bool // kept: the stamps can tell a change
}

// loaderPaths returns what l.globs match now: the last result while every
// directory they list is unchanged, a new glob otherwise.
func (l *loaders) loaderPaths() []string {
	l.mu.RLock()
	found := l.found
	l.mu.RUnlock()
	if found.ok && sameStamps(found.dirs) {
		return found.paths
	}
	statAt := time.Now()
	var dirs []string
	for _, g := range l.globs {
		dirs = append(dirs, globReads(g)...)
	}
	found = globResult{dirs: map[string]dirStamp{}, ok: true}
	for _, d := range dirs {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			found.dirs[d] = dirStamp{}
			continue
		}
		found.dirs[d] = stampOf(&st)
		if !found.dirs[d].Settled(d, statAt, racyMargin, &l.local, cachedFS) {
			found.ok = false
		}
	}
	for _, g := range l.globs {
		paths, _ := filepath.Glob(g)
		found.paths = append(found.paths, paths...)
	}
	l.mu.Lock()
	l.found = found
	l.mu.Unlock()
	return found.paths
}

// globReads returns the directories filepath.Glob(pattern) lists: the
// pattern's directory, or, when that has wildcards too, every directory it
// matches and those its own glob lists.
func globReads(pattern string) []string {
	dir, _ := filepath.Split(pattern)
	if dir != "/" {
		dir = strings.TrimSuffix(dir, "/")
	}
	if dir == "" {
		dir = "."
	}
	if !strings.ContainsAny(dir, `*?[\`) {
		return []string{dir}
	}
	m, _ := filepath.Glob(dir)
	return append(globReads(dir), m...)
}

// sameStamps reports whether every directory still has its stamp.
func sameStamps(dirs map[string]dirStamp) bool {
	for d, want := range dirs {
		var st unix.Stat_t
		got := dirStamp{}
		if unix.Stat(d, &st) == nil {
			got = stampOf(&st)
		}
		if got != want {
			return false
		}
	}
	return true
}

// learn adds the file at path (symbolic links followed) as a loader.
func (l *loaders) learn(path string) (inodeKey, bool) {
	f, err := os.Open(path)
	if err != nil {
		return inodeKey{}, false
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return inodeKey{}, false
	}
	key := keyOf(&st)
	l.mu.RLock()
	known, full := l.keys[key], len(l.keys) >= maxLoaders
	l.mu.RUnlock()
	if known || full {
		return key, known
	}
	var sum [32]byte
	hashed := st.Size <= maxLoaderSize && hashFile(f, &sum)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys[key] = true
	if hashed && !containsSum(l.sums[st.Size], sum) {
		l.sums[st.Size] = append(l.sums[st.Size], sum)
	}
	return key, true
}

// interpreterOf learns the PT_INTERP of the binary bin (inode key) and
// returns its inode; the zero key when it has none (static, script).
func (l *loaders) interpreterOf(key inodeKey, bin io.ReaderAt) inodeKey {
	l.mu.RLock()
	ik, ok := l.interp[key]
	l.mu.RUnlock()
	if ok {
		return ik
	}
	if path := ptInterp(bin); path != "" {
		ik, _ = l.learn(path)
	}
	l.mu.Lock()
	if len(l.interp) < maxInterpCache {
		l.interp[key] = ik
	}
	l.mu.Unlock()
	return ik
}

// ptInterp returns the interpreter an ELF binary asks for, or "".
func ptInterp(r io.ReaderAt) string {
	f, err := elf.NewFile(r)
	if err != nil {
		return ""
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP || p.Filesz == 0 || p.Filesz > unix.PathMax {
			continue
		}
		buf := make([]byte, p.Filesz)
		if _, err := p.ReadAt(buf, 0); err != nil {
			return ""
		}
		s, _, _ := bytes.Cut(buf, []byte{0})
		return string(s)
	}
	return ""
}

// isLoader reports whether the process of thread tid runs a dynamic loader.
// binFD is the file it is opening: its own interpreter is learnt first. When
// /proc/TID/exe cannot be read the answer is yes: it is only asked about
// opens of deny_exec files, and failing closed there refuses a read of a
// binary at worst.
func (l *loaders) isLoader(tid, binFD int) bool {
	exe := "/proc/" + strconv.Itoa(tid) + "/exe"
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		return true
	}
	key := keyOf(&st)
	l.mu.RLock()
	known := l.keys[key]
	l.mu.RUnlock()
	if known {
		return true
	}
	var bst unix.Stat_t
	if unix.Fstat(binFD, &bst) == nil {
		if ik := l.interpreterOf(keyOf(&bst), fdReaderAt(binFD)); ik == key {
			return true
		}
	}
	l.mu.RLock()
	sums := l.sums[st.Size]
	l.mu.RUnlock()
	if len(sums) == 0 {
		return false
	}
	// Same size as a loader: a copy of it, or a coincidence.
	f, err := os.Open(exe)
	if err != nil {
		return true
	}
	defer f.Close()
	var sum [32]byte
	if !hashFile(f, &sum) {
		return true
	}
	return containsSum(sums, sum)
}

// isLoaderKnown is isLoader from what l knows already, for the reader: a
// stat of /proc/TID/exe that takes what the kernel holds of the inode
// (AT_STATX_DONT_SYNC: no wait on a file server), then the known loader
// inodes and the interpreter learnt before for bin (the inode of the file
// opened). ok is false when only isLoader can tell: bin's interpreter not
// read yet, or an exe the size of a known loader (a copy, to hash).
func (l *loaders) isLoaderKnown(tid int, bin inodeKey) (loader, ok bool) {
	var stx unix.Statx_t
	const want = unix.STATX_INO | unix.STATX_SIZE
	if err := unix.Statx(unix.AT_FDCWD, "/proc/"+strconv.Itoa(tid)+"/exe", unix.AT_STATX_DONT_SYNC, want, &stx); err != nil || stx.Mask&want != want {
		return true, true // as isLoader: fail closed
	}
	key := inodeKey{unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.keys[key] {
		return true, true
	}
	ik, learnt := l.interp[bin]
	if !learnt {
		return false, false
	}
	if ik == key {
		return true, true
	}
	if len(l.sums[int64(stx.Size)]) > 0 {
		return false, false
	}
	return false, true
}

// inExec reports whether thread tid is inside execve: the exec's own open of
// the file is reported as FAN_OPEN_PERM after FAN_OPEN_EXEC_PERM, and was
// decided as an exec already. A "running" thread is waited out until
// deadline (blocked). known is false when /proc/TID/syscall could not be
// read or the thread was still "running" at the deadline: the caller must
// then decide as if it might be either, whichever refuses.
func (c *syscallFiles) inExec(tid int, deadline time.Time) (in, known bool) {
	line, err := c.blocked(tid, deadline)
	if err != nil {
		return false, false
	}
	return execCall(line), true
}

// execCall reports whether a /proc/TID/syscall line is an execve.
func execCall(line string) bool {
	nrText, _, _ := strings.Cut(line, " ")
	nr, err := strconv.Atoi(nrText)
	if err != nil {
		return false
	}
	idx, ok := syscalls[nr]
	return ok && idx == neverWrite
}

// inExecOnce is inExec from one read, for the reader: ok is false when
// the thread was "running" (see blocked), which only a worker waits out,
// or when the read failed (the worker tries again and decides on not
// knowing).
func (c *syscallFiles) inExecOnce(tid int) (in, ok bool) {
	var buf [256]byte
	n, err := c.read(tid, buf[:])
	if err != nil {
		return false, false
	}
	line := string(buf[:n])
	if strings.HasPrefix(line, "running") {
		return false, false
	}
	return execCall(line), true
}

func hashFile(f *os.File, sum *[32]byte) bool {
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxLoaderSize+1)); err != nil {
		return false
	}
	h.Sum(sum[:0])
	return true
}

func containsSum(sums [][32]byte, sum [32]byte) bool {
	for _, s := range sums {
		if s == sum {
			return true
		}
	}
	return false
}

// fdReaderAt reads the event's fd with pread, leaving its offset alone.
type fdReaderAt int

func (fd fdReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(fd), p, off)
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
