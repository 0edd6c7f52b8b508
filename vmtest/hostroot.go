package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The host's userland in the guest (--host-root): an ext4 image of the
// host's /usr (Debian's root is merged-usr: /bin, /lib, /lib64 and /sbin are
// links into it), a few files of /etc that programs need to start (the
// dynamic loader's cache, alternatives links, CA certificates) and any
// --host-dir (a second, per-run image), attached read-only as virtio disks. There is no virtiofsd on
// our hosts and the cloud kernels have no 9p; a block device needs neither.
// The guest mounts it on /host and lays each directory over its own with
// overlayfs (guest files first, then the host's, writes to a tmpfs), so
// bash, python3, git, tmux, curl and node run with their libraries and data
// while busybox's applets, the test binaries and --bin files stay on top.

// hostRootExcludes are parts of /usr that no test needs and that would
// make the image several times larger (toolchains, SDKs, documentation).
var hostRootExcludes = []string{
	"/usr/lib/google-cloud-sdk", "/usr/lib/jvm", "/usr/lib/llvm-14", "/usr/lib/gcc", "/usr/lib/debug",
	"/usr/lib/postgresql", "/usr/include", "/usr/local/go", "/usr/share/doc", "/usr/share/man",
	"/usr/share/locale", "/usr/share/package-lists", "/usr/share/icons", "/usr/share/fonts", "/usr/src",
}

// hostEtc are the files and directories of /etc copied into the image.
var hostEtc = []string{"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
	"/etc/ssl", "/etc/ca-certificates", "/etc/gitconfig", "/etc/localtime", "/etc/mime.types", "/etc/nsswitch.conf"}

// Where the guest mounts the images: the host root (vda) and the
// --host-dir image (vdb).
const (
	guestHostRoot = "/host"
	guestHostDirs = "/host-dirs"
)

// guestOverlay is one directory the guest lays a host one under.
type guestOverlay struct {
	dir   string // in the guest, e.g. /bin
	lower string // the mounted image's, e.g. /host/usr/bin
}

// hostRootOverlays are the directories of a merged-usr root, then extra
// (the --host-dir directories) at their own paths.
func hostRootOverlays(extra []string) []guestOverlay {
	var o []guestOverlay
	for _, d := range []struct{ dir, lower string }{{"/usr", "usr"}, {"/bin", "usr/bin"}, {"/sbin", "usr/sbin"}, {"/lib", "usr/lib"}, {"/lib64", "usr/lib64"}} {
		o = append(o, guestOverlay{d.dir, guestHostRoot + "/" + d.lower})
	}
	for _, d := range extra {
		d = filepath.Clean(d)
		o = append(o, guestOverlay{d, guestHostDirs + d})
	}
	return o
}

// hostDirsImage builds this run's image of the --host-dir directories
// into runDir (not cached: they are usually a test's own).
func hostDirsImage(ctx context.Context, runDir string, dirs []string) (string, error) {
	stage := filepath.Join(runDir, "host-dirs")
	var size int64
	for _, d := range dirs {
		n, err := stageTree(d, filepath.Join(stage, d))
		if err != nil {
			return "", fmt.Errorf("--host-dir %s: %w", d, err)
		}
		size += n
	}
	img := filepath.Join(runDir, "host-dirs.ext4")
	if err := mkext4(ctx, stage, img, size); err != nil {
		return "", err
	}
	return img, os.RemoveAll(stage)
}

// mkext4 makes an ext4 image of dir, without a journal (it is mounted
// read-only), with room for the metadata of size bytes of files: about one
// 256-byte inode and one block per small file; 25% and 256 MiB over the
// data cover it.
func mkext4(ctx context.Context, dir, img string, size int64) error {
	mib := size/(1<<20)*5/4 + 256
	mk := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-E", "root_owner=0:0",
		"-d", dir, img, fmt.Sprintf("%dM", mib))
	if out, err := mk.CombinedOutput(); err != nil {
		os.Remove(img)
		return fmt.Errorf("mke2fs -d %s: %w\n%s", dir, err, out)
	}
	return nil
}

// hostRootImage returns an ext4 image of the host's userland, building it
// into the cache when the cached one may be stale: it is keyed by the
// exclusions and the times dpkg's database and the top directories last
// changed.
func hostRootImage(ctx context.Context, cache string, log io.Writer) (string, error) {
	key := sha256.New()
	fmt.Fprintln(key, "v1", strings.Join(hostRootExcludes, " "), strings.Join(hostEtc, " "))
	for _, p := range []string{"/var/lib/dpkg/status", "/usr", "/usr/local/bin", "/usr/lib/node_modules"} {
		st, err := os.Stat(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if err == nil {
			fmt.Fprintln(key, p, st.ModTime().UnixNano(), st.Size())
		} else {
			fmt.Fprintln(key, p, "missing")
		}
	}
	dir := filepath.Join(cache, "hostroot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	img := filepath.Join(dir, hex.EncodeToString(key.Sum(nil))[:16]+".ext4")
	if _, err := os.Stat(img); err == nil {
		now := time.Now()
		_ = os.Chtimes(img, now, now) // in use: not stale for removeStaleImages
		return img, nil
	}
	unlock, err := lockFile(filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(img); err == nil {
		return img, nil
	}
	start := time.Now()
	stage, err := os.MkdirTemp(dir, ".stage-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	var size int64
	for _, src := range append([]string{"/usr"}, hostEtc...) {
		n, err := stageTree(src, filepath.Join(stage, src))
		if err != nil {
			return "", fmt.Errorf("host root: %w", err)
		}
		size += n
	}
	tmp := img + ".tmp"
	if err := mkext4(ctx, stage, tmp, size); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, img); err != nil {
		return "", err
	}
	removeStaleImages(dir, img)
	fmt.Fprintf(log, "vmtest: host root image %s (%d MiB of files) built in %.1fs\n", filepath.Base(img), size>>20, time.Since(start).Seconds())
	return img, nil
}

// removeStaleImages deletes the other images: one host root is ~1.5 GB.
func removeStaleImages(dir, keep string) {
	imgs, _ := filepath.Glob(filepath.Join(dir, "*.ext4"))
	for _, i := range imgs {
		if i != keep {
			os.Remove(i)
		}
	}
}

// stageTree mirrors src under dst with hard links (copies across file
// systems), skipping hostRootExcludes and sockets; it returns the bytes
// of the regular files. A missing src stages nothing.
func stageTree(src, dst string) (int64, error) {
	var size int64
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		for _, x := range hostRootExcludes {
			if p == x {
				return fs.SkipDir
			}
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return nil // vanished meanwhile
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			return os.Chmod(out, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case info.Mode().IsRegular():
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			size += info.Size()
			if err := os.Link(p, out); err == nil {
				return nil
			} else if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, fs.ErrPermission) {
				return err
			}
			return copyRegular(p, out, info.Mode())
		default: // sockets, fifos, devices: nothing a program needs from /usr
			return nil
		}
	})
	return size, err
}

func copyRegular(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
