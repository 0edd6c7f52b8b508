//go:build linux

package usersock

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"sort"
	"strconv"

	"golang.org/x/sys/unix"
)

// Max bounds the sockets kept for one run: each is a rule (a watched
// name on the fanotify backend).
const Max = 64

// Place is a directory to look in: to what depth, and whether sockets
// directly in it count.
type Place struct {
	Dir   string
	Depth int
	Top   bool
}

// Places are the places to look in for uid. In the temp directories only
// sockets in the user's own directories count (tmux-UID/default,
// ssh-XXXX/agent.N): a rule on a name directly in /tmp would have the
// fanotify backend watch /tmp for it, and every unlink there by anyone
// would cost an event (docs/performance.md). In the user's runtime
// directory every one counts, down to gnupg/d.X/S.gpg-agent.
func Places(uid int) []Place {
	return []Place{
		{Dir: "/tmp", Depth: 2},
		{Dir: "/var/tmp", Depth: 2},
		{Dir: "/dev/shm", Depth: 2},
		{Dir: "/run/user/" + strconv.Itoa(uid), Depth: 3, Top: true},
	}
}

// Find returns the sockets owned by uid in places, sorted, at most Max,
// and whether more were left out. It does not follow symbolic links and
// enters only directories uid owns: a socket in another user's directory
// is that user's business, and the sandbox could not remove it anyway.
//
// Every run pays for it before its create request, and a root user's
// temp directories on a shared machine hold hundreds of directories of
// theirs (405, with 5,900 entries, on the development host): so each
// directory is read once through a descriptor with getdents, each entry
// named relative to it, and only a socket or a directory is looked at
// further (no sorted listing, no path built, no allocation for the other
// entries).
func Find(uid int, places []Place) (socks []string, more bool) {
	f := &finder{uid: uint32(uid), out: &socks}
	for _, p := range places {
		fd, err := unix.Open(p.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		f.walk(fd, filepath.Clean(p.Dir), p.Depth, p.Top)
	}
	sort.Strings(socks)
	if len(socks) > Max {
		return socks[:Max], true
	}
	return socks, false
}

// finder is one Find: a getdents buffer per depth (a directory's
// listing is gone through while the walk is inside one of its entries).
type finder struct {
	uid  uint32
	out  *[]string
	bufs map[int][]byte
}

// walk looks through the directory open as fd, named dir, and closes fd.
func (f *finder) walk(fd int, dir string, depth int, top bool) {
	defer unix.Close(fd)
	if depth <= 0 || len(*f.out) > Max {
		return
	}
	if f.bufs == nil {
		f.bufs = map[int][]byte{}
	}
	buf := f.bufs[depth]
	if buf == nil {
		buf = make([]byte, 16<<10)
		f.bufs[depth] = buf
	}
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil || n <= 0 {
			return
		}
		for off := 0; off+direntName <= n; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+direntReclen:]))
			if reclen <= direntName || off+reclen > n {
				return
			}
			typ := buf[off+direntType]
			name := buf[off+direntName : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			off += reclen
			f.entry(fd, dir, name, typ, depth, top)
		}
	}
}

// The fields of struct linux_dirent64 that walk reads: d_reclen, d_type,
// d_name.
const (
	direntReclen = 16
	direntType   = 18
	direntName   = 19
)

// entry looks at one entry of the directory open as fd.
func (f *finder) entry(fd int, dir string, name []byte, typ byte, depth int, top bool) {
	if len(name) == 0 || string(name) == "." || string(name) == ".." {
		return
	}
	var st unix.Stat_t
	if typ == unix.DT_UNKNOWN {
		// A file system that does not fill in d_type: its type from
		// the inode, as os.ReadDir would.
		if statAt(fd, dir, string(name), &st) != nil {
			return
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFSOCK:
			typ = unix.DT_SOCK
		case unix.S_IFDIR:
			typ = unix.DT_DIR
		default:
			return
		}
	}
	switch {
	case typ == unix.DT_SOCK:
		if top && f.owner(fd, dir, string(name)) == f.uid {
			*f.out = append(*f.out, filepath.Join(dir, string(name)))
		}
	case typ == unix.DT_DIR && depth > 1:
		// Only a directory the walk goes into is stat'ed: at the last
		// level it would find nothing, and the user's directories in
		// /tmp can hold hundreds (go-build's 256), each a lookup.
		if f.owner(fd, dir, string(name)) != f.uid {
			return
		}
		// Not through a symbolic link put there since the stat.
		sub, err := unix.Openat(fd, string(name), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		f.walk(sub, filepath.Join(dir, string(name)), depth-1, true)
	}
}

// statAt is fstatat(fd, name) without following a link, dir being fd's
// path; tests count the calls.
var statAt = func(fd int, dir, name string, st *unix.Stat_t) error {
	return unix.Fstatat(fd, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

// owner is the owner of the entry name of the directory open as fd,
// without following a link; an unreadable one is root's (never the
// user's).
func (f *finder) owner(fd int, dir, name string) uint32 {
	var st unix.Stat_t
	if err := statAt(fd, dir, name, &st); err != nil {
		return 0
	}
	return st.Uid
}
