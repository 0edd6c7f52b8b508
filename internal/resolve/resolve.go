//go:build linux

package resolve

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"

	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

// File is an existing file or directory that a rule protects.
type File struct {
	Path  string // as found, symlinks resolved
	Dev   uint64 // kernel encoding (sb->s_dev): major<<20 | minor
	Ino   uint64
	IsDir bool
	Rule  policy.RuleID
}

// KernelDev converts a userspace st_dev to the kernel's internal encoding,
// which is what BPF programs read from inode->i_sb->s_dev.
func KernelDev(stDev uint64) uint64 {
	return uint64(unix.Major(stDev))<<20 | uint64(unix.Minor(stDev))
}

// Paths returns the files that the Paths entries of set name and that exist
// now. Entries that do not exist are skipped: they are still matched by path.
func Paths(set policy.FileSet) ([]File, error) {
	var files []File
	var errs []error
	r := newResolver()
	for _, e := range set.Paths {
		f, err := r.stat(e.Value, e.Rule)
		switch {
		case err == nil:
			files = append(files, f)
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR):
		default:
			errs = append(errs, err)
		}
	}
	return files, errors.Join(errs...)
}

// DefaultExecDirs is where exec name rules are looked up: the standard
// binary directories plus every directory of pathEnv (a $PATH value).
func DefaultExecDirs(pathEnv string) []string {
	dirs := []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}
	seen := map[string]bool{}
	var out []string
	for _, d := range append(dirs, filepath.SplitList(pathEnv)...) {
		if d == "" || !filepath.IsAbs(d) || seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, d)
	}
	return out
}

// Executables returns the executables in dirs whose name an exec rule of set
// matches (Names, NamePrefix, NameSuffix), with symlinks resolved, so that
// "nc" also protects the file /usr/bin/nc points to (nc.openbsd). The same
// inode found twice is reported once.
//
// A file that also answers to names no rule matches is left out: on
// busybox systems nc, wget and sh are all links to /bin/busybox, and
// denying the file would deny the shell. Such a program is denied by the
// name it was started as only (the BPF-LSM backend checks it; fanotify
// sees files, not names). Shared lists those files so callers can say so.
// The target's own name does not count as another name: /usr/bin/nc ->
// nc.openbsd still protects nc.openbsd. Nor does a symlink to a file that
// a rule names itself: /usr/bin/slogin -> ssh is an alias, so "ssh" still
// protects /usr/bin/ssh.
func Executables(set policy.FileSet, dirs []string) []File {
	files, _ := ExecutablesShared(set, dirs)
	return files
}

// Shared is an executable that an exec name rule matches under one name but
// that is also installed under names no rule matches.
type Shared struct {
	File    File
	Denied  []string // names matching a rule, e.g. "nc"
	Allowed []string // other names of the same file, e.g. "sh"
}

// ExecutablesShared is Executables plus the multi-call files it left out.
func ExecutablesShared(set policy.FileSet, dirs []string) ([]File, []Shared) {
	return (*ExecCache)(nil).ExecutablesShared(set, dirs)
}

// ExecutablesShared is the package's ExecutablesShared reusing the
// directory listings c kept (execcache.go); a nil c keeps none.
func (c *ExecCache) ExecutablesShared(set policy.FileSet, dirs []string) ([]File, []Shared) {
	cache := c
	type other struct {
		name, real string
		link       bool
	}
	type names struct {
		file    File
		denied  []string
		targets map[string]bool // resolved paths of the denied names
		others  []other
	}
	// One stat per entry groups the names by the inode they lead to; only
	// a group with a name a rule matches is resolved (EvalSymlinks, a
	// syscall per path component), since only such a group is reported.
	// A PATH holds thousands of names and a rule matches a handful.
	type entry struct {
		name, path string
		rule       policy.RuleID
		match      bool
		link       bool
	}
	groups := map[[2]uint64][]entry{}
	var order [][2]uint64
	gen := cache.begin()
	// A directory is listed once, however many names it has on PATH: on a
	// merged-/usr system /bin and /usr/bin are one.
	seenDir := map[[2]uint64]bool{}
	memo := stamps{}
	for _, dir := range dirs {
		var dst unix.Stat_t
		if err := unix.Stat(dir, &dst); err != nil {
			continue
		}
		dk := [2]uint64{uint64(dst.Dev), dst.Ino}
		if seenDir[dk] {
			continue
		}
		seenDir[dk] = true
		for _, ent := range cache.list(gen, dir, &dst, memo) {
			if ent.skip {
				continue
			}
			rule, match := set.MatchName(ent.name)
			if groups[ent.key] == nil {
				order = append(order, ent.key)
			}
			groups[ent.key] = append(groups[ent.key], entry{ent.name, filepath.Join(dir, ent.name), rule, match, ent.link})
		}
	}
	byInode := map[[2]uint64]*names{}
	r := newResolver()
	for _, key := range order {
		g := groups[key]
		if !slices.ContainsFunc(g, func(e entry) bool { return e.match }) {
			continue
		}
		var n *names
		for _, e := range g {
			f, err := r.stat(e.path, e.rule)
			if err != nil || f.IsDir {
				continue
			}
			if n == nil {
				n = &names{file: f, targets: map[string]bool{}}
			}
			if e.match {
				if n.file.Rule == 0 {
					n.file.Rule = e.rule
				}
				n.denied = append(n.denied, e.name)
				n.targets[f.Path] = true
			} else {
				n.others = append(n.others, other{e.name, f.Path, e.link})
			}
		}
		if n != nil {
			byInode[key] = n
		}
	}
	var files []File
	var shared []Shared
	for _, key := range order {
		n := byInode[key]
		if n == nil {
			continue
		}
		// A file whose own name a rule matches is that program: other
		// names that are symlinks to it are aliases (Debian's slogin ->
		// ssh), not the applets of a multi-call binary (nc -> busybox).
		_, ownDenied := set.MatchName(filepath.Base(n.file.Path))
		var allowed []string
		for _, o := range n.others {
			if !o.link && n.targets[o.real] {
				continue // the program's own file, not another name
			}
			if o.link && ownDenied {
				continue // an alias of a denied program
			}
			allowed = append(allowed, o.name)
		}
		switch {
		case len(n.denied) == 0:
		case len(allowed) == 0:
			files = append(files, n.file)
		default:
			shared = append(shared, Shared{File: n.file, Denied: n.denied, Allowed: allowed})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, shared
}

func stat(path string, rule policy.RuleID) (File, error) { return newResolver().stat(path, rule) }

// resolver resolves many paths that share ancestors (the ~90 protected
// paths below one home; the names on PATH): what filepath.EvalSymlinks
// answers, with each ancestor directory lstat'ed once per resolver
// instead of once per path. It keeps nothing past its caller's
// resolution, so it cannot go stale across sandboxes.
type resolver struct {
	realDirs map[string]bool // absolute clean dir -> it and its ancestors are directories, not links
}

func newResolver() *resolver { return &resolver{realDirs: map[string]bool{"/": true}} }

// realDir reports whether dir and each of its ancestors is a directory
// that is not a symbolic link: then dir is its own real path.
func (r *resolver) realDir(dir string) bool {
	if ok, seen := r.realDirs[dir]; seen {
		return ok
	}
	ok := r.realDir(filepath.Dir(dir))
	if ok {
		var st unix.Stat_t
		ok = unix.Lstat(dir, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	r.realDirs[dir] = ok
	return ok
}

// stat resolves path (symbolic links, "..") and stats what it leads to.
// The quick way applies only when path is absolute and every ancestor is
// a real directory; anything else (a link on the way or at the end, a
// missing ancestor) takes filepath.EvalSymlinks, with its errors.
func (r *resolver) stat(path string, rule policy.RuleID) (File, error) {
	clean := filepath.Clean(path)
	if path == clean && filepath.IsAbs(clean) && clean != "/" && r.realDir(filepath.Dir(clean)) {
		var st unix.Stat_t
		err := unix.Lstat(clean, &st)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return fileOf(clean, &st, rule), nil
		}
		if errors.Is(err, unix.ENOENT) {
			return File{}, fmt.Errorf("resolve %s: %w", path, &fs.PathError{Op: "lstat", Path: clean, Err: err})
		}
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return File{}, fmt.Errorf("resolve %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return File{}, fmt.Errorf("stat %s: %w", real, err)
	}
	return fileOf(real, &st, rule), nil
}

func fileOf(real string, st *unix.Stat_t, rule policy.RuleID) File {
	return File{
		Path:  real,
		Dev:   KernelDev(st.Dev),
		Ino:   st.Ino,
		IsDir: st.Mode&unix.S_IFMT == unix.S_IFDIR,
		Rule:  rule,
	}
}
