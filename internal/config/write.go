package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFileAtomic replaces path with data so that a reader, or a crash, sees
// either the old file or the new one, never a mix: write a temporary file in
// the same directory, fsync it, rename it over path, fsync the directory.
//
// An existing file keeps its mode (and, for root acting for itself, its
// owner); a new one gets perm. A symlink at path (a dotfiles manager's, say)
// is kept and its target replaced.
//
// When u came through sudo all of it runs with u's file-system identity
// (see User.Do), so the file is u's and nothing the user could not write
// themselves (a symlink to /etc/shadow, a --config of /etc/sudoers) is
// written by root.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode, u *User) error {
	return u.Do(func() error { return writeFileAtomic(path, data, perm, u) })
}

func writeFileAtomic(path string, data []byte, perm fs.FileMode, u *User) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	// Under sudo the file is created with the user's fsuid and is theirs
	// already; root acting for itself keeps an existing file's owner.
	uid, gid := -1, -1
	sudo := u != nil && u.Sudo
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		perm = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && !sudo {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("write %s: %w", path, err)
	}

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if uid >= 0 && os.Geteuid() == 0 {
		if err := tmp.Chown(uid, gid); err != nil {
			return fmt.Errorf("write %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		// Some filesystems cannot fsync a directory (EINVAL); the rename
		// itself has still happened.
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// EnsureDir creates dir (mode 0700) if needed, owned by u when running
// under sudo: it is created with u's file-system identity (see User.Do).
func EnsureDir(dir string, u *User) error {
	return u.Do(func() error { return ensureDir(dir) })
}

func ensureDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

func dirOf(path string) string { return filepath.Dir(path) }
