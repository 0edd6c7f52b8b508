package landlock

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fakeFS is a filesystem of inodes by path; links maps a symlink to its
// target.
type fakeFS struct {
	inodes map[string]Inode
	links  map[string]string
}

func (f fakeFS) Lstat(p string) (Inode, error) {
	if i, ok := f.inodes[p]; ok {
		return i, nil
	}
	return Inode{}, fmt.Errorf("lstat %s: %w", p, fs.ErrNotExist)
}

type dirEntry struct {
	name string
	mode fs.FileMode
}

func (d dirEntry) Name() string               { return d.name }
func (d dirEntry) IsDir() bool                { return d.mode.IsDir() }
func (d dirEntry) Type() fs.FileMode          { return d.mode.Type() }
func (d dirEntry) Info() (fs.FileInfo, error) { return nil, fs.ErrInvalid }

func (f fakeFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	var out []fs.DirEntry
	for p, i := range f.inodes {
		if p != "/" && filepath.Dir(p) == dir {
			out = append(out, dirEntry{filepath.Base(p), i.Mode})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name() < out[b].Name() })
	return out, nil
}

func (f fakeFS) Resolve(p string) (string, error) {
	out := "/"
	for _, name := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		next := filepath.Join(out, name)
		if _, ok := f.inodes[next]; !ok {
			return "", fs.ErrNotExist
		}
		if t, ok := f.links[next]; ok {
			next = t
		}
		out = next
	}
	return out, nil
}

const user, other = 1000, 0

func TestPlantable(t *testing.T) {
	dir := func(perm fs.FileMode, uid uint32) Inode { return Inode{Mode: fs.ModeDir | perm, UID: uid} }
	sock := func(uid uint32) Inode { return Inode{Mode: fs.ModeSocket | 0o777, UID: uid} }
	st := fakeFS{inodes: map[string]Inode{
		"/":                                 dir(0o755, other),
		"/tmp":                              dir(0o777|fs.ModeSticky, other),
		"/tmp/ssh-x":                        dir(0o700, user), // the user's, in sticky /tmp
		"/tmp/ssh-x/agent":                  sock(user),
		"/tmp/root":                         dir(0o755, other), // root's, in sticky /tmp
		"/tmp/root/bus":                     sock(other),
		"/tmp/root/sub":                     dir(0o755, other),
		"/tmp/root/sub/open":                dir(0o777, other), // writable beneath
		"/tmp/root/link":                    {Mode: fs.ModeSymlink | 0o777, UID: other},
		"/tmp/.X11-unix":                    dir(0o777|fs.ModeSticky, other),
		"/home":                             dir(0o755, other),
		"/home/u":                           dir(0o755, user),
		"/home/u/.ssh":                      dir(0o700, user),
		"/home/u/.ssh/agent.sock":           sock(user),
		"/home/u/proj":                      dir(0o755, user),
		"/home/u/proj/sockets":              dir(0o755, user),
		"/run":                              dir(0o755, other),
		"/run/user":                         dir(0o755, other),
		"/run/user/1000":                    dir(0o700, user),
		"/run/user/1000/bus":                sock(user),
		"/run/user/1000/podman":             dir(0o700, user),
		"/run/user/1000/podman/podman.sock": sock(user),
		"/run/user/1000/systemd":            dir(0o755, user),
		"/var":                              dir(0o755, other),
		"/var/run":                          {Mode: fs.ModeSymlink | 0o777, UID: other},
	}, links: map[string]string{"/var/run": "/run", "/tmp/root/link": "/tmp/ssh-x"}}
	who := Who{UID: user, GIDs: []uint32{user}}
	// The domain Plan makes for home /home/u with the project writable.
	rs := Ruleset{HandledFS: AccessWrite, Rules: []Rule{
		{"/tmp", AccessWrite}, {"/run", AccessWrite}, {"/var", AccessWrite},
		{"/home/u/proj", AccessWrite},
	}}
	// The domain Plan makes when the user's runtime directory is split
	// to keep /run/user/1000/systemd read-only (Options.ReadOnly): no
	// name can be made, removed or renamed directly in /run/user/1000.
	split, _ := Plan(Options{Home: "/home/u", Writable: []string{"proj"}, ReadOnly: []string{"/run/user/1000/systemd"}}, plannedFS{st})
	for _, c := range []struct {
		rs    Ruleset
		path  string
		where string // "" not plantable
	}{
		{rs, "/tmp/ssh-x/agent", "/tmp"}, // the user's directory: renamed away
		{rs, "/tmp/ssh-x/", "/tmp"},      // a directory entry, same
		{rs, "/tmp/root/bus", ""},        // root's: fixed
		{rs, "/tmp/root/", "/tmp"},       // writable beneath
		{rs, "/tmp/root/sub/", "/tmp/root/sub/open"},
		{rs, "/tmp/root/link", "/tmp"},              // a symlink leads to a user's directory
		{rs, "/tmp/.X11-unix/", "/tmp/.X11-unix"},   // sticky, open to all: new names
		{rs, "/tmp/.X11-unix/X0", "/tmp/.X11-unix"}, // missing: created there
		{rs, "/tmp/missing/", "/tmp"},               // missing directory: made by the sandbox
		{rs, "/home/u/.ssh/agent.sock", ""},         // the home is read-only
		{rs, "/home/u/.ssh/", ""},
		{rs, "/home/u/proj/sockets/", "/home/u/proj"}, // the project is writable
		{rs, "/run/user/1000/bus", "/run/user/1000"},  // the user's: unlinked and replaced
		{rs, "/var/run/user/1000/bus", "/run/user/1000"},
		{Ruleset{}, "/home/u/.ssh/agent.sock", "/home/u"}, // no Landlock
		{split, "/run/user/1000/bus", ""},                 // the session bus: fixed
		{split, "/var/run/user/1000/bus", ""},
		{split, "/run/user/1000/podman/podman.sock", "/run/user/1000/podman"}, // in a directory of the user's there
		{split, "/run/user/1000/systemd/private", ""},
		{split, "/tmp/ssh-x/agent", "/tmp"},
	} {
		where, ok := Plantable(c.rs, c.path, true, who, st)
		if ok != (c.where != "") || where != c.where {
			t.Errorf("Plantable(%s) = %q, %v; want %q", c.path, where, ok, c.where)
		}
	}
}

// plannedFS is fakeFS as Plan lists it.
type plannedFS struct{ fakeFS }

func (f plannedFS) IsTempDir(dir string) bool {
	i, err := f.Lstat(dir)
	return err == nil && i.IsDir() && i.Mode&fs.ModeSticky != 0 && i.Mode.Perm()&0o002 != 0
}
