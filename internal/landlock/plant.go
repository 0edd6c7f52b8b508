package landlock

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
)

// Inode is what Plantable needs to know of a file: its type and
// permission bits (fs.FileMode, with ModeSticky) and its owner.
type Inode struct {
	Mode fs.FileMode
	UID  uint32
	GID  uint32
}

// Stater is the filesystem Plantable looks at (LStat with os.Lstat, on
// Linux OSStat), so that it can be tested without one. Lstat returns an
// error wrapping fs.ErrNotExist for a missing path; Resolve is
// filepath.EvalSymlinks.
type Stater interface {
	Lstat(path string) (Inode, error)
	ReadDir(dir string) ([]fs.DirEntry, error)
	Resolve(path string) (string, error)
}

// Who is the user a sandbox runs as.
type Who struct {
	UID  uint32
	GIDs []uint32 // primary group first
}

// plantRights are the rights that put a name of the sandbox's choosing in
// a directory: a symlink, a hard link (ABI 2+: REFER from elsewhere), a
// directory to fill, or the removal or renaming of the entry there.
const plantRights = AccessMakeSym | AccessRefer | AccessMakeDir | AccessRemoveFile | AccessRemoveDir

// maxPlantWalk bounds the directories Plantable lists beneath a directory
// entry; beyond it the answer is "plantable" (fail closed).
const maxPlantWalk = 10000

// Plantable tells whether a sandbox in the domain rs (as Effective made it
// for the running kernel; a zero Ruleset is no Landlock at all), running
// as who, could make the unix socket name path reach a socket of its
// choosing: by replacing path or one of its ancestors with a symlink, a
// hard link or a directory of its own, or, when dir (an allow_unix
// directory entry), by planting one anywhere beneath path. where is the
// directory it could change. Symlinks on the way are checked where they
// lead too. Only the cgroup connect_unix check, which compares names,
// needs this; BPF LSM compares the socket reached.
func Plantable(rs Ruleset, path string, dir bool, who Who, st Stater) (where string, ok bool) {
	seen := map[string]bool{}
	return plantable(rs, filepath.Clean(path), dir, who, st, seen)
}

func plantable(rs Ruleset, path string, dir bool, who Who, st Stater, seen map[string]bool) (string, bool) {
	if seen[path] {
		return "", false
	}
	seen[path] = true
	// The name as given: every directory on the way, then the place
	// the kernel's lookup really ends (symlinks followed).
	if w, ok := plantableName(rs, path, dir, who, st, seen); ok {
		return w, true
	}
	if real, ok := resolveExisting(path, st); ok && real != path {
		return plantable(rs, real, dir, who, st, seen)
	}
	return "", false
}

// plantableName walks path's components from /, without following
// symlinks.
func plantableName(rs Ruleset, path string, dir bool, who Who, st Stater, seen map[string]bool) (string, bool) {
	parent := "/"
	pIno, err := st.Lstat(parent)
	if err != nil {
		return parent, true
	}
	for _, name := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		if name == "" {
			break
		}
		child := filepath.Join(parent, name)
		cIno, err := st.Lstat(child)
		if errors.Is(err, fs.ErrNotExist) {
			// Missing: whoever may create names in parent makes it.
			if canChange(rs, parent, pIno, nil, who) {
				return parent, true
			}
			return "", false
		}
		if err != nil {
			return child, true // unreadable: fail closed
		}
		if canChange(rs, parent, pIno, &cIno, who) {
			return parent, true
		}
		if cIno.Mode&fs.ModeSymlink != 0 {
			return "", false // plantable() checks where it leads
		}
		parent, pIno = child, cIno
	}
	if !dir || !pIno.IsDir() {
		return "", false
	}
	return plantableBeneath(rs, path, pIno, who, st, seen)
}

// plantableBeneath: can a name be created in path or in any directory
// beneath it (a directory allow_unix entry allows them all)?
func plantableBeneath(rs Ruleset, path string, ino Inode, who Who, st Stater, seen map[string]bool) (string, bool) {
	type item struct {
		path string
		ino  Inode
	}
	queue := []item{{path, ino}}
	for n := 0; len(queue) > 0; n++ {
		if n >= maxPlantWalk {
			return path, true
		}
		d := queue[0]
		queue = queue[1:]
		if canChange(rs, d.path, d.ino, nil, who) {
			return d.path, true
		}
		entries, err := st.ReadDir(d.path)
		if err != nil {
			return d.path, true // unlistable: fail closed
		}
		for _, e := range entries {
			p := filepath.Join(d.path, e.Name())
			ci, err := st.Lstat(p)
			if err != nil {
				continue // gone since ReadDir
			}
			switch {
			case ci.Mode&fs.ModeSymlink != 0:
				if real, err := st.Resolve(p); err == nil {
					if w, ok := plantable(rs, real, true, who, st, seen); ok {
						return w, true
					}
				}
			case ci.IsDir():
				queue = append(queue, item{p, ci})
			}
		}
	}
	return "", false
}

// IsDir tells whether the inode is a directory.
func (i Inode) IsDir() bool { return i.Mode.IsDir() }

// canChange: may who, in rs, put a name of its choosing in dir (child
// nil), or replace dir's entry child?
func canChange(rs Ruleset, dir string, d Inode, child *Inode, who Who) bool {
	if !d.IsDir() || granted(rs, dir)&plantRights == 0 || !unixWritable(d, who) {
		return false
	}
	// A sticky directory (/tmp) lets only the owner of an entry, or of
	// the directory, remove or rename it.
	if child != nil && d.Mode&fs.ModeSticky != 0 && who.UID != 0 && child.UID != who.UID && d.UID != who.UID {
		return false
	}
	return true
}

// granted are the rights rs leaves the sandbox at path: those it does not
// handle, and those a rule on path or an ancestor grants.
func granted(rs Ruleset, path string) uint64 {
	g := ^rs.HandledFS
	for _, r := range rs.Rules {
		if r.Path == path || r.Path == "/" || strings.HasPrefix(path, strings.TrimSuffix(r.Path, "/")+"/") {
			g |= r.Access
		}
	}
	return g
}

func unixWritable(d Inode, who Who) bool {
	perm := d.Mode.Perm()
	switch {
	case who.UID == 0:
		return true
	case d.UID == who.UID:
		return perm&0o200 != 0
	}
	for _, g := range who.GIDs {
		if g == d.GID {
			return perm&0o020 != 0
		}
	}
	return perm&0o002 != 0
}

// resolveExisting resolves the symlinks of path's longest existing
// prefix and appends the rest.
func resolveExisting(path string, st Stater) (string, bool) {
	rest := ""
	for p := path; ; p = filepath.Dir(p) {
		if real, err := st.Resolve(p); err == nil {
			return filepath.Join(real, rest), true
		}
		if p == "/" {
			return "", false
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}
