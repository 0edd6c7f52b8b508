package darwin

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Tree is what a link-safe walk found beneath a directory: the directory
// itself and its subdirectories, the regular files, and the symbolic links
// it skipped.
type Tree struct {
	Dirs       []string
	Files      []string
	Links      []string
	Unreadable []string
}

// WalkTree lists root and everything beneath it without following a
// symbolic link anywhere: every entry's type comes from the directory
// listing (lstat semantics), a link is recorded and skipped, and a
// directory is only entered when it is a real directory. Entries in a
// directory for which skip returns true are not entered (their own path
// is still listed). A root that is a link, or missing, gives an empty tree.
// Sockets, pipes and devices are left out: nothing needs an entry on them.
func WalkTree(fsys fs.FS, root string, skip func(dir string) bool) Tree {
	var t Tree
	fi, err := fs.Lstat(fsys, rel(root))
	if err != nil || !fi.IsDir() {
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			t.Links = append(t.Links, root)
		}
		return t
	}
	queue := []string{root}
	t.Dirs = append(t.Dirs, root)
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		if skip != nil && skip(dir) {
			continue
		}
		ents, err := fs.ReadDir(fsys, rel(dir))
		if err != nil {
			t.Unreadable = append(t.Unreadable, dir)
			continue
		}
		for _, d := range ents {
			p := path.Join(dir, d.Name())
			switch typ := d.Type(); {
			case typ&fs.ModeSymlink != 0:
				t.Links = append(t.Links, p)
			case typ.IsDir():
				t.Dirs = append(t.Dirs, p)
				queue = append(queue, p)
			case typ.IsRegular():
				t.Files = append(t.Files, p)
			}
		}
	}
	return t
}

// maxLinkHops is the limit on links followed while resolving one path,
// XNU's MAXSYMLINKS.
const maxLinkHops = 32

// ResolvePath returns p with every symbolic link in it resolved, and
// whether the result is a directory. A deny rule is meant for what the
// name reaches (a ~/.ssh that is a link to elsewhere is still your keys),
// so deny entries go on the resolved path, without following anything
// after that; allow entries never use this. A dangling link is
// fs.ErrNotExist: there is nothing to protect.
func ResolvePath(fsys fs.FS, p string) (string, bool, error) {
	parts := splitPath(p)
	cur := "/"
	hops := 0
	for i := 0; i < len(parts); i++ {
		next := path.Join(cur, parts[i])
		fi, err := fs.Lstat(fsys, rel(next))
		if err != nil {
			return "", false, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			if i == len(parts)-1 {
				return cur, fi.IsDir(), nil
			}
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", false, fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		dest, err := fs.ReadLink(fsys, rel(next))
		if err != nil {
			return "", false, err
		}
		if !path.IsAbs(dest) {
			dest = path.Join(cur, dest)
		}
		parts = append(splitPath(dest), parts[i+1:]...)
		cur, i = "/", -1
	}
	fi, err := fs.Lstat(fsys, rel(cur))
	if err != nil {
		return "", false, err
	}
	return cur, fi.IsDir(), nil
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(path.Clean("/"+p), "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// isNotExist reports a missing path, including a dangling link.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
