//go:build linux

package resolve

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

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
	for _, e := range set.Paths {
		f, err := stat(e.Value, e.Rule)
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
func Executables(set policy.FileSet, dirs []string) []File {
	seen := map[[2]uint64]bool{}
	var files []File
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, ent := range entries {
			rule, ok := MatchName(set, ent.Name())
			if !ok {
				continue
			}
			f, err := stat(filepath.Join(dir, ent.Name()), rule)
			if err != nil || f.IsDir {
				continue
			}
			key := [2]uint64{f.Dev, f.Ino}
			if seen[key] {
				continue
			}
			seen[key] = true
			files = append(files, f)
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files
}

// MatchName reports whether a single file name (no slash) matches the name
// rules of set: Names exactly, NamePrefix and NameSuffix by prefix or suffix.
func MatchName(set policy.FileSet, name string) (policy.RuleID, bool) {
	for _, e := range set.Names {
		if name == e.Value {
			return e.Rule, true
		}
	}
	for _, e := range set.NamePrefix {
		if strings.HasPrefix(name, e.Value) {
			return e.Rule, true
		}
	}
	for _, e := range set.NameSuffix {
		if strings.HasSuffix(name, e.Value) {
			return e.Rule, true
		}
	}
	return 0, false
}

func stat(path string, rule policy.RuleID) (File, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return File{}, fmt.Errorf("resolve %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return File{}, fmt.Errorf("stat %s: %w", real, err)
	}
	return File{
		Path:  real,
		Dev:   KernelDev(st.Dev),
		Ino:   st.Ino,
		IsDir: st.Mode&unix.S_IFMT == unix.S_IFDIR,
		Rule:  rule,
	}, nil
}
