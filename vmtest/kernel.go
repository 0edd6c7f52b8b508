package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// kernelSeries maps a --kernel shorthand to the Debian package names that
// provide it; the capture group is the number that orders them.
var kernelSeries = map[string]*regexp.Regexp{
	"6.1":  regexp.MustCompile(`^linux-image-6\.1\.0-([0-9]+)-cloud-amd64$`),
	"6.12": regexp.MustCompile(`^linux-image-6\.12\.([0-9]+)\+deb12-cloud-amd64$`),
}

// newestPackage picks the package with the highest number from names that
// match re, or "" when none does.
func newestPackage(re *regexp.Regexp, names []string) string {
	best, bestN := "", -1
	for _, name := range names {
		m := re.FindStringSubmatch(strings.TrimSpace(name))
		if m == nil {
			continue
		}
		n, err := strconv.Atoi(m[1])
		if err == nil && n > bestN {
			best, bestN = m[0], n
		}
	}
	return best
}

// resolveKernel turns spec (a series such as "6.1", a package name, or a path
// to a vmlinuz file) into the path of a bootable kernel image, downloading and
// unpacking the Debian package into cache when it is not there yet.
func resolveKernel(ctx context.Context, spec, cache string, log io.Writer) (string, error) {
	if strings.Contains(spec, "/") {
		if _, err := os.Stat(spec); err != nil {
			return "", fmt.Errorf("kernel image: %w", err)
		}
		return spec, nil
	}
	pkg := spec
	if re, ok := kernelSeries[spec]; ok {
		var err error
		if pkg, err = newestInSeries(ctx, spec, re, cache, log); err != nil {
			return "", err
		}
	} else if !strings.HasPrefix(spec, "linux-image-") {
		return "", fmt.Errorf("--kernel %q: want 6.1, 6.12, a linux-image-* package name or a path to a vmlinuz file", spec)
	}

	dir := filepath.Join(cache, "kernel", pkg)
	if img, err := cachedKernel(dir); err == nil {
		warnTestModules(addTestModules(ctx, cache, pkg, dir, log), log)
		return img, nil
	}

	// Several engineers may run vmtest at once: one downloads, the others wait.
	unlock, err := lockFile(filepath.Join(cache, "kernel.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if img, err := cachedKernel(dir); err == nil {
		warnTestModules(addTestModulesLocked(ctx, cache, pkg, dir, log), log)
		return img, nil
	}
	// An entry from before modules were kept: replace it.
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}

	x, cleanup, err := unpackPackage(ctx, cache, pkg, log)
	if err != nil {
		return "", err
	}
	defer cleanup()
	tmp := filepath.Dir(x)
	// Keep only the kernel image, its config and the modules virtiofs needs:
	// the other modules are 100+ MB that the guest does not use.
	keep := filepath.Join(tmp, "keep")
	if err := os.MkdirAll(filepath.Join(keep, "modules"), 0o755); err != nil {
		return "", err
	}
	boot, _ := filepath.Glob(filepath.Join(x, "boot", "*"))
	for _, f := range boot {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "vmlinuz-") || strings.HasPrefix(base, "config-") {
			if err := os.Rename(f, filepath.Join(keep, base)); err != nil {
				return "", err
			}
		}
	}
	if _, err := findVmlinuz(keep); err != nil {
		return "", fmt.Errorf("package %s: %w", pkg, err)
	}
	if err := keepModules(ctx, x, filepath.Join(keep, "modules"), virtiofsModules, modulesStamp); err != nil {
		return "", fmt.Errorf("package %s: %w", pkg, err)
	}
	if err := keepModules(ctx, x, filepath.Join(keep, "modules"), testModules, testModulesStamp); err != nil {
		return "", fmt.Errorf("package %s: %w", pkg, err)
	}
	if err := os.Rename(keep, dir); err != nil {
		return "", fmt.Errorf("install kernel into cache: %w", err)
	}
	return findVmlinuz(dir)
}

// virtiofsModules are the modules that mounting a virtiofs share or the
// host root image (virtio_blk, overlay) needs, in load order (each after
// its dependencies). Debian's cloud kernels build them as modules; a kernel
// that builds one in simply lacks its file.
var virtiofsModules = []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "fuse", "virtiofs", "virtio_blk", "overlay"}

// modulesStamp, in a cache entry's modules directory, lists the modules it
// was made for: an entry made for fewer is downloaded again.
const modulesStamp = "LIST"

// testModules are modules the tests need that Debian's kernels build as
// modules and the guest, without the kernel's /lib/modules, cannot load on
// demand: unix_diag answers the agent's sock_diag question of who holds a
// client's end of a connection before Linux 6.5 (api.PeerOf), and whether
// a socket found at a refused unix name is the sandbox's own
// (loader.Net.SandboxBound, 6.7 and later). They have
// their own stamp, so that entries cached before them (and runs of older
// trees, which check only modulesStamp) stay valid: they are added to an
// entry that lacks them.
var testModules = []string{"unix_diag"}

const testModulesStamp = "LIST.tests"

// addTestModules adds testModules to the cache entry dir of package pkg
// when it lacks them, under the cache's lock.
func addTestModules(ctx context.Context, cache, pkg, dir string, log io.Writer) error {
	if hasStamp(dir, testModules, testModulesStamp) {
		return nil
	}
	unlock, err := lockFile(filepath.Join(cache, "kernel.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	return addTestModulesLocked(ctx, cache, pkg, dir, log)
}

// addTestModulesLocked is addTestModules for a caller holding the lock.
func addTestModulesLocked(ctx context.Context, cache, pkg, dir string, log io.Writer) error {
	if hasStamp(dir, testModules, testModulesStamp) {
		return nil
	}
	x, cleanup, err := unpackPackage(ctx, cache, pkg, log)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := keepModules(ctx, x, filepath.Join(dir, "modules"), testModules, testModulesStamp); err != nil {
		return fmt.Errorf("package %s: %w", pkg, err)
	}
	return nil
}

// warnTestModules says that the guest goes without testModules: a cached
// kernel still boots offline, and the tests that need them say so.
func warnTestModules(err error, log io.Writer) {
	if err != nil {
		fmt.Fprintf(log, "vmtest: %v; the guest goes without %s\n", err, strings.Join(testModules, ", "))
	}
}

// hasStamp reports whether the cache entry dir holds the modules mods, as
// its stamp file says.
func hasStamp(dir string, mods []string, stamp string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "modules", stamp))
	return err == nil && string(data) == strings.Join(mods, " ")
}

// unpackPackage downloads the Debian package pkg and unpacks it into a
// temporary directory below the cache; it returns the unpacked root and
// the function that removes it.
func unpackPackage(ctx context.Context, cache, pkg string, log io.Writer) (string, func(), error) {
	fmt.Fprintf(log, "vmtest: downloading %s\n", pkg)
	tmp, err := os.MkdirTemp(filepath.Join(cache, "kernel"), ".download-")
	if err != nil {
		return "", nil, fmt.Errorf("kernel download dir: %w", err)
	}
	cleanup := func() { os.RemoveAll(tmp) }
	// apt-get download writes into the working directory; _apt cannot write
	// into root's temp dir, which apt reports as a harmless warning.
	dl := exec.CommandContext(ctx, "apt-get", "download", pkg)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("apt-get download %s: %w\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		cleanup()
		return "", nil, fmt.Errorf("apt-get download %s: expected one .deb, found %d", pkg, len(debs))
	}
	x := filepath.Join(tmp, "x")
	if out, err := exec.CommandContext(ctx, "dpkg", "-x", debs[0], x).CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("dpkg -x %s: %w\n%s", debs[0], err, out)
	}
	return x, cleanup, nil
}

// keepModules copies the modules mods from the unpacked package root into
// dst, decompressing them because busybox's insmod may not, and writes
// their list to the file stamp. A module the package lacks (built in) is
// left out.
func keepModules(ctx context.Context, root, dst string, mods []string, stamp string) error {
	found := map[string]string{}
	err := filepath.WalkDir(filepath.Join(root, "lib", "modules"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst"} {
			if base, ok := strings.CutSuffix(name, ext); ok {
				found[base] = p
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range mods {
		src, ok := found[m]
		if !ok {
			continue
		}
		out := filepath.Join(dst, m+".ko")
		var data []byte
		switch {
		case strings.HasSuffix(src, ".xz"):
			data, err = exec.CommandContext(ctx, "xz", "-dc", src).Output()
		case strings.HasSuffix(src, ".zst"):
			data, err = exec.CommandContext(ctx, "zstd", "-dc", src).Output()
		default:
			data, err = os.ReadFile(src)
		}
		if err != nil {
			return fmt.Errorf("module %s: %w", src, err)
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dst, stamp), []byte(strings.Join(mods, " ")), 0o644)
}

// kernelModules lists the virtiofs modules cached next to a kernel image,
// in load order.
func kernelModules(vmlinuz string) []string {
	return cachedModules(vmlinuz, virtiofsModules)
}

// cachedModules lists those of mods cached next to a kernel image.
func cachedModules(vmlinuz string, mods []string) []string {
	var out []string
	for _, m := range mods {
		p := filepath.Join(filepath.Dir(vmlinuz), "modules", m+".ko")
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// cachedKernel returns the kernel image in a complete cache entry.
func cachedKernel(dir string) (string, error) {
	stamp, err := os.ReadFile(filepath.Join(dir, "modules", modulesStamp))
	if err != nil {
		return "", err
	}
	if string(stamp) != strings.Join(virtiofsModules, " ") {
		return "", errors.New("cached for other modules")
	}
	return findVmlinuz(dir)
}

func findVmlinuz(dir string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	if len(m) == 0 {
		return "", fmt.Errorf("no vmlinuz-* in %s", dir)
	}
	sort.Strings(m)
	return m[len(m)-1], nil
}

// seriesTTL is how long the newest package of a series is remembered: asking
// apt costs a second or more on every run, and kernel updates are rare.
const seriesTTL = 24 * time.Hour

// newestInSeries returns the newest package of a kernel series, from a note
// in the cache when it is recent, else from apt. When apt cannot answer, an
// older note will do.
func newestInSeries(ctx context.Context, series string, re *regexp.Regexp, cache string, log io.Writer) (string, error) {
	note := filepath.Join(cache, "kernel", series+".newest")
	data, noteErr := os.ReadFile(note)
	remembered := strings.TrimSpace(string(data))
	if st, err := os.Stat(note); noteErr == nil && err == nil && time.Since(st.ModTime()) < seriesTTL && re.MatchString(remembered) {
		return remembered, nil
	}
	pkg, err := findPackage(ctx, re, log)
	if err != nil {
		if noteErr == nil && re.MatchString(remembered) {
			fmt.Fprintf(log, "vmtest: %v; using %s from an earlier run\n", err, remembered)
			return remembered, nil
		}
		return "", err
	}
	if err := writeFileAtomic(note, []byte(pkg+"\n")); err != nil {
		return "", err
	}
	return pkg, nil
}

// findPackage asks apt for the newest package matching re, refreshing the
// package lists once when they know none.
func findPackage(ctx context.Context, re *regexp.Regexp, log io.Writer) (string, error) {
	search := func() (string, error) {
		out, err := exec.CommandContext(ctx, "apt-cache", "search", "--names-only", "^linux-image-.*-cloud-amd64$").Output()
		if err != nil {
			return "", fmt.Errorf("apt-cache search: %w", err)
		}
		var names []string
		for _, line := range strings.Split(string(out), "\n") {
			if name, _, ok := strings.Cut(line, " - "); ok {
				names = append(names, name)
			}
		}
		return newestPackage(re, names), nil
	}
	pkg, err := search()
	if err != nil {
		return "", err
	}
	if pkg != "" {
		return pkg, nil
	}
	fmt.Fprintln(log, "vmtest: no kernel package in apt's lists, running apt-get update")
	if out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get update: %w\n%s", err, out)
	}
	if pkg, err = search(); err != nil {
		return "", err
	}
	if pkg == "" {
		return "", fmt.Errorf("no package matching %s in apt's lists (is Debian's main archive in sources.list?)", re)
	}
	return pkg, nil
}

// lockFile takes an exclusive flock on path, creating it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

var errMissingTool = errors.New("missing host tool")

// checkTools reports every missing host program at once, with the package
// that provides it.
func checkTools(needApt bool) error {
	tools := []struct{ name, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"busybox", "busybox-static"},
	}
	if needApt {
		tools = append(tools, struct{ name, pkg string }{"dpkg", "dpkg"}, struct{ name, pkg string }{"apt-get", "apt"})
	}
	var missing, pkgs []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.name); err != nil {
			missing = append(missing, t.name)
			pkgs = append(pkgs, t.pkg)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not found; install with: apt-get install %s",
			errMissingTool, strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	return nil
}
