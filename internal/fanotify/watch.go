//go:build linux

package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Why a second group: a directory mark with FAN_EVENT_ON_CHILD reports the
// opens of the directory's own entries, not of its subdirectories' entries,
// so a directory created after Add (mkdir, git clone, tar x, mv of a tree)
// would hold files no mark reports. Creation events need FID reporting,
// which the kernel refuses for the permission classes; this group is in
// notification mode, watches the same directories for FAN_CREATE and
// FAN_MOVED_TO of directories, and grow.go marks what appears. It also
// reports moves out of and deletes in those directories (FAN_MOVED_FROM,
// FAN_DELETE), which no permission event covers: rename.go. FAN_DELETE_SELF
// is not asked for: the directory it names is gone and its handle opens
// nothing, while the FAN_DELETE of its name in the parent says the same
// with a path (a watched tree's root itself is removed only with its
// contents, reported in it first).
//
// FAN_REPORT_DFID_NAME: each event names the parent directory by file handle
// and the entry by name; open_by_handle_at turns the handle into the
// directory's current path.
// The queue stays bounded (16384 events by default): file creations in the
// watched directories are reported too (there is no "directories only"
// flag), and an overflow is survivable: it is reported, the protected
// paths are checked again (recheck in overflow.go) and the trees are
// scanned again (rescan in grow.go).
const (
	watchInitFlags = unix.FAN_CLASS_NOTIF | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK | unix.FAN_REPORT_DFID_NAME | unix.FAN_UNLIMITED_MARKS
	watchMask      = unix.FAN_CREATE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO | unix.FAN_DELETE | unix.FAN_ONDIR
	// nameMask is what a directory watched for some of its names only
	// (above.go) asks: their moves and deletes, not every creation.
	nameMask = unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO | unix.FAN_DELETE | unix.FAN_ONDIR
)

// watcher is the notification group and the directories it watches.
type watcher struct {
	fd int

	mu     sync.Mutex
	refs   map[string]int      // path -> how many sandboxes' trees hold it
	mounts map[[2]int32]int    // fsid -> O_PATH descriptor of a directory on that filesystem
	devs   map[uint64][2]int32 // st_dev -> its fsid, for the devices seen so far
	// named are the directories watched for some names only (above.go),
	// by path and by file handle (what an event carries).
	named   map[string]*namedDir
	namedID map[dirID]*namedDir
	// selves are the directories watched for their own moves (above.go).
	selves map[string]*selfDir
	selfID map[dirID]*selfDir
	// opens are the terminals watched for opens (terminal.go).
	opens map[openKey]*openWatch
	// pts is the directory of pseudo-terminals, watched for opens of
	// every entry while a sandbox lives (terminal.go).
	pts ptsWatch
	// vts are the virtual consoles, watched for opens while a sandbox
	// lives (vtopen.go).
	vts consoleWatch
}

func newWatcher() (*watcher, error) {
	fd, err := unix.FanotifyInit(watchInitFlags, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init for directory creations (FAN_REPORT_DFID_NAME, Linux 5.9): %w", err)
	}
	return &watcher{fd: fd, refs: map[string]int{}, mounts: map[[2]int32]int{}, devs: map[uint64][2]int32{},
		named: map[string]*namedDir{}, namedID: map[dirID]*namedDir{}, selves: map[string]*selfDir{}, selfID: map[dirID]*selfDir{},
		opens: map[openKey]*openWatch{}}, nil
}

// add watches dir (of device dev). ref adds a reference to the path; force
// marks it even if it is already watched: a directory re-created at a
// watched path is a new inode, without the old one's mark.
func (w *watcher) add(dir string, dev uint64, ref, force bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ref {
		w.refs[dir]++
	}
	if w.refs[dir] > 1 && !force {
		return nil
	}
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, watchMask, unix.AT_FDCWD, dir); err != nil {
		// EXDEV, EOPNOTSUPP: a filesystem without usable file handles
		// (some FUSE, a zero fsid). Its new directories stay unmarked.
		return fmt.Errorf("watch %s for new directories: %w", dir, err)
	}
	if _, err := w.mount(dir, dev); err != nil {
		return fmt.Errorf("watch %s for new directories: %w", dir, err)
	}
	return nil
}

// mount returns the fsid of dir (of device dev) and keeps a descriptor on
// its filesystem for open_by_handle_at. w.mu held.
func (w *watcher) mount(dir string, dev uint64) ([2]int32, error) {
	if fsid, ok := w.devs[dev]; ok {
		return fsid, nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return [2]int32{}, fmt.Errorf("statfs: %w", err)
	}
	fsid := sfs.Fsid.Val
	if _, ok := w.mounts[fsid]; !ok {
		// Not O_PATH: open_by_handle_at refuses an O_PATH mount_fd (EBADF).
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return [2]int32{}, err
		}
		w.mounts[fsid] = fd
	}
	w.devs[dev] = fsid
	return fsid, nil
}

// remove drops one reference; the mark goes with the last one.
func (w *watcher) remove(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refs[dir]--; w.refs[dir] > 0 {
		return
	}
	delete(w.refs, dir)
	mask := uint64(watchMask)
	if w.named[dir] != nil {
		mask &^= nameMask // still watched for some names (above.go)
	}
	if w.selves[dir] != nil {
		mask &^= unix.FAN_ONDIR // still watched for its own moves
	}
	_ = unix.FanotifyMark(w.fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_ONLYDIR, mask, unix.AT_FDCWD, dir)
}

// flush removes every directory mark of the watcher's group in one call
// and forgets them (Backend.flushIfEmpty); on an error it forgets
// nothing.
func (w *watcher) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, ""); err != nil {
		return fmt.Errorf("flush directory watches: %w", err)
	}
	clear(w.refs)
	clear(w.named)
	clear(w.namedID)
	clear(w.selves)
	clear(w.selfID)
	clear(w.opens)
	w.pts = ptsWatch{}
	w.vts = consoleWatch{}
	return nil
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.refs)
}

func (w *watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, fd := range w.mounts {
		unix.Close(fd)
	}
	w.mounts = map[[2]int32]int{}
	unix.Close(w.fd)
}

// watchEvent is one creation, move (in or out) or delete reported by the
// watcher.
type watchEvent struct {
	mask     uint64
	pid      int // the process that made the change (its thread group)
	fsid     [2]int32
	handle   []byte // struct file_handle: bytes, type, f_handle
	name     string
	overflow bool
}

// parseWatchEvents splits a buffer read from the watcher. An event without
// a directory record (only an overflow has none) is reported as overflow,
// which makes the caller scan the trees again: the safe reading of what
// cannot be understood.
func parseWatchEvents(buf []byte, out []watchEvent) ([]watchEvent, error) {
	for len(buf) >= metadataSize {
		m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[0]))
		if m.Vers != unix.FANOTIFY_METADATA_VERSION {
			return out, fmt.Errorf("fanotify metadata version %d, want %d", m.Vers, unix.FANOTIFY_METADATA_VERSION)
		}
		n := int(m.Event_len)
		if n < metadataSize || n > len(buf) || int(m.Metadata_len) > n {
			return out, fmt.Errorf("fanotify event length %d out of range", n)
		}
		ev := watchEvent{mask: m.Mask, overflow: true}
		if m.Mask&unix.FAN_Q_OVERFLOW == 0 {
			if info, ok := dfidName(buf[m.Metadata_len:n]); ok {
				ev = info
				ev.mask = m.Mask
				ev.pid = int(m.Pid)
			}
		}
		out = append(out, ev)
		buf = buf[n:]
	}
	return out, nil
}

// dfidName reads the FAN_EVENT_INFO_TYPE_DFID_NAME record:
// header (type, pad, len u16), fsid (2 x s32), struct file_handle
// (handle_bytes u32, handle_type s32, f_handle), then the name, NUL-ended.
func dfidName(recs []byte) (watchEvent, bool) {
	for len(recs) >= 4 {
		typ, size := recs[0], int(binary.NativeEndian.Uint16(recs[2:4]))
		if size < 4 || size > len(recs) {
			return watchEvent{}, false
		}
		rec := recs[:size]
		recs = recs[size:]
		if typ != unix.FAN_EVENT_INFO_TYPE_DFID_NAME || len(rec) < 20 {
			continue
		}
		var ev watchEvent
		ev.fsid[0] = int32(binary.NativeEndian.Uint32(rec[4:8]))
		ev.fsid[1] = int32(binary.NativeEndian.Uint32(rec[8:12]))
		hb := int(binary.NativeEndian.Uint32(rec[12:16]))
		if 20+hb > len(rec) {
			return watchEvent{}, false
		}
		ev.handle = rec[12 : 20+hb]
		name := rec[20+hb:]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		ev.name = string(name)
		return ev, ev.name != ""
	}
	return watchEvent{}, false
}

// dirPath returns the current path of the directory the event names.
func (w *watcher) dirPath(ev *watchEvent) (string, error) {
	fd, err := w.dirFd(ev)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	if len(p) == 0 || p[0] != '/' {
		return "", errors.New("directory not reachable from the root: " + p)
	}
	return p, nil
}

// dirFd opens the directory the event names (O_PATH): what is done in it
// by name then follows no path, and no symlink.
func (w *watcher) dirFd(ev *watchEvent) (int, error) {
	w.mu.Lock()
	mfd, ok := w.mounts[ev.fsid]
	w.mu.Unlock()
	if !ok {
		return -1, fmt.Errorf("no watched directory on filesystem %x", ev.fsid)
	}
	typ := int32(binary.NativeEndian.Uint32(ev.handle[4:8]))
	fh := unix.NewFileHandle(typ, ev.handle[8:])
	// The mounts map keeps mfd open until close, which runs only after the
	// loop that calls this has stopped.
	fd, err := unix.OpenByHandleAt(mfd, fh, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open_by_handle_at: %w", err)
	}
	return fd, nil
}
