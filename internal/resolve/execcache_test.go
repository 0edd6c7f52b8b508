//go:build linux

package resolve

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// newTestCache is an ExecCache that keeps directories just created (no
// racy margin). Tests wait a few clock ticks between changes instead.
func newTestCache(t *testing.T) *ExecCache {
	c := NewExecCache()
	if c.mounts == nil {
		t.Fatal("cannot watch /proc/self/mountinfo: the cache would keep nothing")
	}
	c.margin = 0
	return c
}

// tick waits past the timestamp granularity, so that the next change to a
// directory gives it other times than those already seen.
func tick() { time.Sleep(20 * time.Millisecond) }

func writeExe(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func fileNames(files []File) []string {
	var out []string
	for _, f := range files {
		out = append(out, filepath.Base(f.Path))
	}
	return out
}

// TestExecCacheSameAsUncached: on this machine's own exec directories, a
// resolution from the cache gives exactly what listing them afresh gives,
// and it did reuse the listings.
func TestExecCacheSameAsUncached(t *testing.T) {
	set := policy.FileSet{Names: []policy.Entry{{Value: "nc", Rule: 1}, {Value: "ssh", Rule: 2}, {Value: "curl", Rule: 3}, {Value: "sh", Rule: 4}}}
	dirs := DefaultExecDirs(os.Getenv("PATH"))
	c := NewExecCache()
	first, firstShared := c.ExecutablesShared(set, dirs)
	second, secondShared := c.ExecutablesShared(set, dirs)
	want, wantShared := ExecutablesShared(set, dirs)
	if !reflect.DeepEqual(first, want) || !reflect.DeepEqual(second, want) {
		t.Fatalf("files: uncached %v, cached first %v, second %v", want, first, second)
	}
	if !reflect.DeepEqual(firstShared, wantShared) || !reflect.DeepEqual(secondShared, wantShared) {
		t.Fatalf("shared: uncached %v, cached first %v, second %v", wantShared, firstShared, secondShared)
	}
	if c.hits == 0 {
		t.Fatalf("the second resolution listed %v afresh: nothing was kept", dirs)
	}
}

// TestExecCacheSeesDirectoryChanges: a denied name created, or replaced
// by a symbolic link to a multi-call binary, after the directory was kept
// is resolved as it is now.
func TestExecCacheSeesDirectoryChanges(t *testing.T) {
	c := newTestCache(t)
	bin := t.TempDir()
	writeExe(t, filepath.Join(bin, "ls"), "ls")
	writeExe(t, filepath.Join(bin, "busybox"), "busybox")
	if err := os.Symlink("busybox", filepath.Join(bin, "sh")); err != nil {
		t.Fatal(err)
	}
	set := policy.FileSet{Names: []policy.Entry{{Value: "nc", Rule: 1}}}
	tick()
	if files, _ := c.ExecutablesShared(set, []string{bin}); len(files) != 0 {
		t.Fatalf("files = %v before nc exists", fileNames(files))
	}
	tick()
	writeExe(t, filepath.Join(bin, "nc"), "nc")
	files, _ := c.ExecutablesShared(set, []string{bin})
	if !slices.Equal(fileNames(files), []string{"nc"}) {
		t.Fatalf("files = %v after nc was created, want [nc]", fileNames(files))
	}
	tick()
	if err := os.Remove(filepath.Join(bin, "nc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(bin, "nc")); err != nil {
		t.Fatal(err)
	}
	files, shared := c.ExecutablesShared(set, []string{bin})
	if len(files) != 0 || len(shared) != 1 {
		t.Fatalf("after nc became a link to busybox: files %v, shared %v; want none and busybox", fileNames(files), shared)
	}
}

// TestExecCacheSeesSymlinkTargetChange: what a kept symbolic link leads
// to is resolved again. nc -> alt/nc, switched in a directory the cache
// never listed (as alternatives do), first to prog-b, which sh names too
// (a multi-call file: left out), then to prog-a alone, which must then be
// protected: a kept target would still group nc with sh.
func TestExecCacheSeesSymlinkTargetChange(t *testing.T) {
	c := newTestCache(t)
	bin, alt := t.TempDir(), t.TempDir()
	writeExe(t, filepath.Join(bin, "prog-a"), "a")
	writeExe(t, filepath.Join(bin, "prog-b"), "b")
	for link, target := range map[string]string{
		filepath.Join(bin, "sh"): "prog-b",
		filepath.Join(alt, "nc"): filepath.Join(bin, "prog-b"),
		filepath.Join(bin, "nc"): filepath.Join(alt, "nc"),
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	set := policy.FileSet{Names: []policy.Entry{{Value: "nc", Rule: 1}}}
	tick()
	if files, shared := c.ExecutablesShared(set, []string{bin}); len(files) != 0 || len(shared) != 1 {
		t.Fatalf("nc -> prog-b, which sh names too: files %v, shared %+v; want none and prog-b", fileNames(files), shared)
	}
	tick()
	if err := os.Remove(filepath.Join(alt, "nc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(bin, "prog-a"), filepath.Join(alt, "nc")); err != nil {
		t.Fatal(err)
	}
	files, _ := c.ExecutablesShared(set, []string{bin})
	if !slices.Equal(fileNames(files), []string{"prog-a"}) {
		t.Fatalf("after alt/nc was switched to prog-a: files = %v, want [prog-a]", fileNames(files))
	}
	if c.hits == 0 {
		t.Fatal("bin was listed afresh: the test proves nothing about the cache")
	}
}

// TestExecCacheStaleGeneration: a resolution that began before a mount
// change that another resolution noticed does not keep what it listed
// (it may have listed before the mount).
func TestExecCacheStaleGeneration(t *testing.T) {
	testutil.RequireRoot(t)
	c := newTestCache(t)
	bin := t.TempDir()
	writeExe(t, filepath.Join(bin, "nc"), "nc")
	tick()
	gen := c.begin()
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", mnt, err)
	}
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", mnt, err)
	}
	if c.begin() == gen {
		t.Fatal("the mount and unmount were not noticed")
	}
	var st unix.Stat_t
	if err := unix.Stat(bin, &st); err != nil {
		t.Fatal(err)
	}
	c.list(gen, bin, &st, stamps{})
	if len(c.dirs) != 0 {
		t.Fatalf("a listing of the old generation was kept: %v", c.dirs)
	}
}

// TestExecCacheSeesBindMount: a file bind-mounted over a name changes
// what the name runs without touching its directory. While another
// program is mounted over sh as a second name of nc, nc is a multi-call
// file (left out); once it is unmounted, nc must be protected again: a
// cache still believing sh is nc would leave nc unmarked.
func TestExecCacheSeesBindMount(t *testing.T) {
	testutil.RequireRoot(t)
	c := newTestCache(t)
	bin := t.TempDir()
	nc, sh := filepath.Join(bin, "nc"), filepath.Join(bin, "sh")
	writeExe(t, nc, "nc")
	writeExe(t, sh, "sh")
	set := policy.FileSet{Names: []policy.Entry{{Value: "nc", Rule: 1}}}
	tick()
	if files, _ := c.ExecutablesShared(set, []string{bin}); !slices.Equal(fileNames(files), []string{"nc"}) {
		t.Fatalf("files = %v, want [nc]", fileNames(files))
	}

	if err := unix.Mount(nc, sh, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s over %s: %v", nc, sh, err)
	}
	mounted := true
	unmount := func() {
		if mounted {
			if err := unix.Unmount(sh, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", sh, err)
			}
			mounted = false
		}
	}
	t.Cleanup(unmount)
	files, shared := c.ExecutablesShared(set, []string{bin})
	if len(files) != 0 || len(shared) != 1 || !slices.Equal(shared[0].Allowed, []string{"sh"}) {
		t.Fatalf("with nc mounted over sh: files %v, shared %+v; want none, and nc shared with sh", fileNames(files), shared)
	}

	unmount()
	files, _ = c.ExecutablesShared(set, []string{bin})
	if !slices.Equal(fileNames(files), []string{"nc"}) {
		t.Fatalf("after the unmount: files = %v, want [nc] (a stale listing leaves nc unprotected)", fileNames(files))
	}
}

// BenchmarkExecutables: resolving the default policy's deny_exec names
// on this machine's PATH, listing every directory afresh (uncached)
// against reusing the listings (cached); compare the two side by side.
func BenchmarkExecutables(b *testing.B) {
	pol, _ := policy.Merge(policy.Defaults(), nil, false)
	c, err := policy.Compile(pol, policy.Env{Home: b.TempDir(), ProjectRoot: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	dirs := DefaultExecDirs(os.Getenv("PATH"))
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			ExecutablesShared(c.Exec, dirs)
		}
	})
	b.Run("cached", func(b *testing.B) {
		cache := NewExecCache()
		cache.ExecutablesShared(c.Exec, dirs)
		for b.Loop() {
			cache.ExecutablesShared(c.Exec, dirs)
		}
	})
}

// quietDir is a directory for a test of kept link resolutions: they
// depend on every ancestor, and /tmp changes all the time on a machine
// where other tests run, which would make every resolution a miss and the
// test prove nothing. /dev/shm is quieter; the tests still retry.
func quietDir(t *testing.T) string {
	t.Helper()
	if d, err := os.MkdirTemp("/dev/shm", "aigate-resolve-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	return t.TempDir()
}

// kept runs resolve until a resolution reuses a kept link (at most 20
// tries, ticks apart): an ancestor changed by someone else in between
// makes a miss that says nothing about the cache.
func kept(t *testing.T, c *ExecCache, resolve func()) {
	t.Helper()
	for range 20 {
		before := c.linkHits
		resolve()
		if c.linkHits > before {
			return
		}
		tick()
	}
	t.Fatal("no kept link resolution was reused in 20 tries: the test proves nothing about the cache")
}

// TestExecCacheSeesLinkTargetDirectory: a link's kept resolution is
// reused while nothing it went through changed, and not after a change in
// the directory of the file it leads to (nc -> ../lib/prog, a relative
// target, replaced there by a hard link to what sh names: nc becomes a
// second name of a multi-call file), nor after one in a directory on
// the way (an absolute link, cc -> ROOT/alt/cc, switched in alt).
func TestExecCacheSeesLinkTargetDirectory(t *testing.T) {
	c := newTestCache(t)
	root := quietDir(t)
	bin, lib, alt := filepath.Join(root, "bin"), filepath.Join(root, "lib"), filepath.Join(root, "alt")
	for _, d := range []string{bin, lib, alt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeExe(t, filepath.Join(lib, "prog"), "prog")
	writeExe(t, filepath.Join(lib, "shell"), "shell")
	writeExe(t, filepath.Join(lib, "cc-a"), "cc-a")
	writeExe(t, filepath.Join(lib, "cc-b"), "cc-b")
	for link, target := range map[string]string{
		filepath.Join(bin, "nc"): "../lib/prog",
		filepath.Join(bin, "sh"): "../lib/shell",
		filepath.Join(bin, "cc"): filepath.Join(alt, "cc"),
		filepath.Join(alt, "cc"): filepath.Join(lib, "cc-a"),
		filepath.Join(bin, "c1"): filepath.Join(lib, "cc-b"),
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	set := policy.FileSet{Names: []policy.Entry{{Value: "nc", Rule: 1}, {Value: "cc", Rule: 2}}}
	resolve := func() ([]string, []Shared) {
		files, shared := c.ExecutablesShared(set, []string{bin})
		names := fileNames(files)
		slices.Sort(names)
		return names, shared
	}
	tick()
	kept(t, c, func() {
		if names, shared := resolve(); !slices.Equal(names, []string{"cc-a", "prog"}) || len(shared) != 0 {
			t.Fatalf("files %v, shared %+v; want [cc-a prog] and none", names, shared)
		}
	})

	tick()
	if err := os.Remove(filepath.Join(lib, "prog")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(lib, "shell"), filepath.Join(lib, "prog")); err != nil {
		t.Fatal(err)
	}
	if names, shared := resolve(); !slices.Equal(names, []string{"cc-a"}) || len(shared) != 1 {
		t.Fatalf("after lib/prog became the file sh names: files %v, shared %+v; want [cc-a] and nc shared with sh", names, shared)
	}

	tick()
	kept(t, c, func() { resolve() })
	tick()
	if err := os.Remove(filepath.Join(alt, "cc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(lib, "cc-b"), filepath.Join(alt, "cc")); err != nil {
		t.Fatal(err)
	}
	if names, shared := resolve(); len(names) != 0 || len(shared) != 2 {
		t.Fatalf("after alt/cc was switched to cc-b, which c1 names too: files %v, shared %+v; want none", names, shared)
	}
}
