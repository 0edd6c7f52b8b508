package main

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/aigate-dev/aigate/vmtest/internal/cpio"
)

// baseVersion changes whenever baseArchive's output would change for the
// same busybox, so stale cached bases are not reused.
const baseVersion = "1"

// Test users exist so tests can drop privileges (aigate run --user, SUDO_UID)
// and look users up with os/user, whose pure-Go fallback reads /etc/passwd.
const etcPasswd = `root:x:0:0:root:/root:/bin/sh
alice:x:1000:1000:alice:/home/alice:/bin/sh
bob:x:1001:1001:bob:/home/bob:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`

const etcGroup = `root:x:0:
alice:x:1000:
bob:x:1001:
nogroup:x:65534:
`

const etcHosts = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
`

// staticBusybox finds busybox and checks that it is statically linked: a
// dynamic one would find no libc in the guest.
func staticBusybox() (string, error) {
	p, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox not found; install with: apt-get install busybox-static")
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("busybox %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; install the static one with: apt-get install busybox-static", p)
		}
	}
	return p, nil
}

// checkStatic fails for a dynamically linked ELF binary, which could not
// start in the guest (it has no libc); scripts and static binaries pass.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		if _, statErr := os.Stat(p); statErr != nil {
			return statErr
		}
		return nil // not ELF: a script or data file
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked and cannot run in the guest, which has no libc: build it with CGO_ENABLED=0", p)
		}
	}
	return nil
}

// baseArchive writes the part of the initramfs that does not depend on the
// tests: directories, device nodes, /etc files, busybox and its applet links.
func baseArchive(w io.Writer, busybox string) error {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	cw := cpio.NewWriter(w)
	dirs := []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin",
		"etc", "dev", "proc", "sys", "tmp", "run", "var", "var/tmp", "mnt", "root", "home", "tests", "src"}
	for _, d := range dirs {
		perm := fs.FileMode(0o755)
		if d == "tmp" || d == "var/tmp" {
			perm = 0o777 | fs.ModeSticky
		}
		if err := cw.Dir(d, perm, 0, 0); err != nil {
			return err
		}
	}
	for _, home := range []struct {
		name string
		id   uint32
	}{{"home/alice", 1000}, {"home/bob", 1001}} {
		if err := cw.Dir(home.name, 0o755, home.id, home.id); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init before devtmpfs is mounted:
	// without this node init would run with no stdin, stdout or stderr.
	if err := cw.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := cw.CharDev("dev/null", 0o666, 1, 3); err != nil {
		return err
	}
	for name, data := range map[string]string{"etc/passwd": etcPasswd, "etc/group": etcGroup, "etc/hosts": etcHosts} {
		if err := cw.File(name, 0o644, []byte(data)); err != nil {
			return err
		}
	}
	if err := cw.File("bin/busybox", 0o755, bb); err != nil {
		return err
	}
	for _, link := range strings.Fields(string(out)) {
		if link == "bin/busybox" {
			continue
		}
		if err := cw.Symlink(link, "/bin/busybox"); err != nil {
			return err
		}
	}
	return cw.Close()
}

// cachedBase returns the path of the base archive for busybox, building it
// when the cache has none for this busybox.
func cachedBase(cache, busybox string) (string, error) {
	st, err := os.Stat(busybox)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s %s %d %d", baseVersion, busybox, st.Size(), st.ModTime().UnixNano())))
	p := filepath.Join(cache, "initramfs", "base-"+hex.EncodeToString(sum[:8])+".cpio")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := baseArchive(&buf, busybox); err != nil {
		return "", fmt.Errorf("build initramfs base: %w", err)
	}
	if err := writeFileAtomic(p, buf.Bytes()); err != nil {
		return "", err
	}
	return p, nil
}

func writeFileAtomic(p string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

// guestFile is a host file copied into the guest.
type guestFile struct {
	host   string // path on the host
	guest  string // absolute path in the guest
	follow bool   // copy what a symlink points to, not the link
}

// runArchive writes the per-run part of the initramfs: /init, the
// directories in dirs (the tests' working directories), the test binaries and
// extra files. Parent directories are created as needed.
func runArchive(w io.Writer, initScript string, dirs []string, files []guestFile) error {
	cw := cpio.NewWriter(w)
	made := map[string]bool{}
	// The base already has these; re-creating them in a later archive would
	// be harmless but noisy.
	for _, d := range []string{"", ".", "/", "bin", "usr", "usr/local", "usr/local/bin", "tests", "src", "etc", "root", "tmp"} {
		made[d] = true
	}
	var mkdirs func(string) error
	mkdirs = func(d string) error {
		if made[d] {
			return nil
		}
		if err := mkdirs(path.Dir(d)); err != nil {
			return err
		}
		made[d] = true
		return cw.Dir(d, 0o755, 0, 0)
	}
	if err := cw.File("init", 0o755, []byte(initScript)); err != nil {
		return err
	}
	for _, d := range dirs {
		if err := mkdirs(strings.TrimPrefix(path.Clean(d), "/")); err != nil {
			return err
		}
	}
	for _, f := range files {
		name := strings.TrimPrefix(path.Clean(f.guest), "/")
		if err := mkdirs(path.Dir(name)); err != nil {
			return err
		}
		if err := addHostFile(cw, f.host, name, f.follow); err != nil {
			return err
		}
	}
	return cw.Close()
}

// addHostFile copies one host file (or symlink, unless follow) into the
// archive, keeping its permission bits.
func addHostFile(cw *cpio.Writer, host, name string, follow bool) error {
	stat := os.Lstat
	if follow {
		stat = os.Stat
	}
	st, err := stat(host)
	if err != nil {
		return err
	}
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err != nil {
			return err
		}
		return cw.Symlink(name, target)
	case st.Mode().IsRegular():
		f, err := os.Open(host)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | uint32(st.Mode().Perm()), Size: st.Size(), Mtime: st.ModTime().Unix()}); err != nil {
			return err
		}
		if _, err := io.Copy(cw, f); err != nil {
			return fmt.Errorf("copy %s: %w", host, err)
		}
		return nil
	default:
		return fmt.Errorf("%s: only regular files and symlinks can be copied into the guest", host)
	}
}

// expandDir lists the regular files and symlinks below host as guestFiles
// under guest, for copying a directory (e.g. a package's testdata).
func expandDir(host, guest string) ([]guestFile, error) {
	var files []guestFile
	err := filepath.WalkDir(host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(host, p)
		if err != nil {
			return err
		}
		files = append(files, guestFile{host: p, guest: path.Join(guest, filepath.ToSlash(rel))})
		return nil
	})
	return files, err
}
