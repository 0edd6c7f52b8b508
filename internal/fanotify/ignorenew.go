//go:build linux

package fanotify

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Ignore masks for files that appear after Add. The walk at Add gives an
// ignore mask to each file present then that no rule names (marks.go), so
// its opens never reach aigate. A file created later in a marked directory
// (a build's output, an editor's save) had none: every open of it was a
// round trip to the reader (bench/results.md, child-event). Now the first
// sandboxed open of such a file, once decided unrelated to every rule of
// every sandbox, gives it the same mask; later opens, inside a sandbox or
// out, are no round trip. An open by a process outside every sandbox does
// the same after its answer (ignoreOutside): the machine's own opens of a
// new file in a marked directory were each a round trip too.
//
// It is kept right the way the masks of files present at start are:
//   - the mask is set on the inode of the event's fd, never through its
//     path, which may name another inode (a protected one) by then;
//   - it is recorded in the mark table under the table's lock, so that a
//     later protection of the inode (the watcher's protectNew after a
//     rename or link to a protected name, a directory above renamed, a new
//     sandbox's plan) removes it through the path it has then, and one set
//     before the table's lock finds the inode protected and is not set;
//   - without FAN_MARK_IGNORED_SURV_MODIFY: the kernel drops it at the
//     file's first modification, so a file whose content changes (a copy
//     of a deny_exec binary written into it) is decided again;
//   - only for a regular file with one name (another link may be a
//     protected name), whose size is no deny_exec binary's of any sandbox,
//     that no sandbox's policy matches by path and none protects by inode;
//     the size and link count are read again once the mask is set, and a
//     change in between (a truncate to a copy's size, which came before
//     the mask and so did not drop it) removes it.
//
// What stays is the window the masks of files present at start have too
// (docs/backends.md): between a rename or link of the file to a protected
// name and the watcher's handling of it, the mask silences the inode.

// ignoreNew gives p's file an ignore mask after its open was allowed as
// unrelated (verdict.unrelated), if nothing of any live sandbox's applies
// to it. Called by whoever decided p, after the answer, with p's fd open.
func (b *Backend) ignoreNew(p *pending) {
	if b.ignoreFile(p.sb, p.fd, &p.facts) {
		b.stats.lateIgnored()
	}
}

// ignoreOutside is ignoreNew for an open by a process outside every
// sandbox, after its answer: the reader reads what a decision would have
// (the type, links and size, then the path), only for a file the table
// could still give a mask, and asks every sandbox.
func (b *Backend) ignoreOutside(ev event) {
	if ev.mask&unix.FAN_OPEN_EXEC_PERM != 0 || ev.mask&unix.FAN_OPEN_PERM == 0 {
		return
	}
	var stx unix.Statx_t
	const want = unix.STATX_TYPE | unix.STATX_NLINK | unix.STATX_INO | unix.STATX_SIZE
	if err := unix.Statx(ev.fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, want, &stx); err != nil || stx.Mask&want != want {
		return
	}
	f := facts{read: true, size: int64(stx.Size), key: inodeKey{unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino},
		statOK: true, mode: stx.Mode, nlink: stx.Nlink, typeOK: true}
	if f.mode&unix.S_IFMT != unix.S_IFREG || f.nlink != 1 || !b.marks.mayIgnore(f.key) {
		return
	}
	f.path = b.fdPath(ev.fd)
	if b.ignoreFile(nil, ev.fd, &f) {
		b.stats.lateIgnored()
	}
}

// ignoreFile sets the mask on the file open as fd (f read from it) unless
// it is not a regular file with one name, or a sandbox cares about it:
// any sandbox but own (whose decision found it unrelated; nil for none)
// matches its path, or any has a deny_exec binary of its size.
func (b *Backend) ignoreFile(own *sandbox, fd int, f *facts) bool {
	if !f.statOK || !f.typeOK || f.mode&unix.S_IFMT != unix.S_IFREG || f.nlink != 1 {
		return false
	}
	if f.path == "" || !strings.HasPrefix(f.path, "/") || strings.HasSuffix(f.path, " (deleted)") {
		return false
	}
	if b.anyCares(own, f.path, f.size) {
		return false
	}
	return b.marks.ignoreOpen(fd, f.key, f.size, f.path)
}

// anyCares reports whether a live sandbox other than own matches path by
// a rule, or any (own included) has a deny_exec binary of size bytes: a
// file of that size may be a copy of it (copy.go), which an ignore mask
// would let run.
func (b *Backend) anyCares(own *sandbox, path string, size int64) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, s := range b.sandboxes {
		if s.plan.maybeCopy(size) {
			return true
		}
		if s != own && matchPath(s.Policy, path).any() {
			return true
		}
	}
	return false
}

// ignoreOpen sets an ignore mask on the inode open as fd (key, size bytes,
// named path when it was decided), unless the table is full or the inode
// is protected. It reports whether the mask is set.
//
// The reader calls it, after the answer: while another holds the table (a
// batch of the masks set at start, a sandbox's marks) it gives up rather
// than wait; the file's next open tries again.
func (t *markTable) ignoreOpen(fd int, key inodeKey, size int64, path string) bool {
	if !t.mu.TryLock() {
		return false
	}
	defer t.mu.Unlock()
	// A listed inode is marked again: that its open was reported at all
	// says its mask is gone (the kernel drops it at a modification: a
	// file created, written, then read is listed at its first open and
	// reported again at its next).
	_, listed := t.ignored[key]
	if t.closed || (!listed && len(t.ignored) >= t.maxIgn) || t.protect[key] > 0 {
		return false
	}
	// An empty path marks the object fd refers to.
	if err := unix.FanotifyMark(t.group, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK, permMask, fd, ""); err != nil {
		return false // an ignore mask is an optimisation only
	}
	// Listed before it is checked again: should the removal below fail,
	// the listing makes a later protection remove it.
	t.ignored[key] = path
	t.ignPath[path] = true
	var stx unix.Statx_t
	const want = unix.STATX_SIZE | unix.STATX_NLINK
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, want, &stx)
	if err == nil && stx.Mask&want == want && int64(stx.Size) == size && stx.Nlink == 1 {
		return true
	}
	if unix.FanotifyMark(t.group, unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORED_MASK, permMask, fd, "") == nil {
		delete(t.ignored, key)
		delete(t.ignPath, path)
	}
	return false
}

// mayIgnore reports whether the inode key could get a mask now (as
// ignoreOpen decides): the table is free, the inode not protected, and
// listed or room left. Only a hint, to spare an outsider's open the path
// and the matches.
func (t *markTable) mayIgnore(key inodeKey) bool {
	if !t.mu.TryLock() {
		return false
	}
	defer t.mu.Unlock()
	_, listed := t.ignored[key]
	return !t.closed && (listed || len(t.ignored) < t.maxIgn) && t.protect[key] == 0
}

// hasSandboxes reports whether any sandbox is registered: with none, an
// event comes from a mark about to go, and no mask is worth setting.
func (b *Backend) hasSandboxes() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.sandboxes) > 0
}
