package landlock

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// OSStat is the Stater of the real filesystem.
type OSStat struct{}

// Lstat is os.Lstat, with the owner.
func (OSStat) Lstat(path string) (Inode, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Inode{}, err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Inode{}, fmt.Errorf("lstat %s: no owner", path)
	}
	return Inode{Mode: fi.Mode(), UID: sys.Uid, GID: sys.Gid}, nil
}

// ReadDir is os.ReadDir.
func (OSStat) ReadDir(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }

// Resolve is filepath.EvalSymlinks.
func (OSStat) Resolve(path string) (string, error) { return filepath.EvalSymlinks(path) }
