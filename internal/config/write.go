package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
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
	return u.Do(func() error { return writeFileAtomic(path, data, perm, u, nil) })
}

// WriteFileAtomicIf is WriteFileAtomic that calls check just before the
// rename and, when it fails, leaves path as it is and returns check's
// error: a read-merge-write of a file another program writes too (Claude
// Code's ~/.claude.json) checks that the file is still what it read.
func WriteFileAtomicIf(path string, data []byte, perm fs.FileMode, u *User, check func() error) error {
	return u.Do(func() error { return writeFileAtomic(path, data, perm, u, check) })
}

func writeFileAtomic(path string, data []byte, perm fs.FileMode, u *User, check func() error) error {
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
	tmp, err := createTemp(dir, "."+filepath.Base(path)+".tmp")
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
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	return syncDir(dir)
}

// openFile is os.OpenFile; a test replaces it to refuse an open after the
// file was created, as fanotify does.
var openFile = os.OpenFile

// createTemp creates a new file named prefix plus a random number in dir.
// Unlike os.CreateTemp it removes the file when the open that created it
// is refused: a permission check after the creation (fanotify or an LSM
// in a sandbox, a read-only bind) would otherwise leave an empty file
// behind whose name the caller never learns.
func createTemp(dir, prefix string) (*os.File, error) {
	for try := 0; try < 100; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		f, err := openFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		switch {
		case err == nil:
			return f, nil
		case errors.Is(err, fs.ErrExist):
			continue
		}
		if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (and %s could not be removed: %v; remove it by hand)", err, name, rerr)
		}
		return nil, err
	}
	return nil, fmt.Errorf("create a temporary file in %s: too many names taken", dir)
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
