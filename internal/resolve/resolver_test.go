//go:build linux

package resolve

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// statEval is stat as it was before the resolver: filepath.EvalSymlinks,
// then stat.
func statEval(path string) (File, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return File{}, err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return File{}, err
	}
	return fileOf(real, &st, 0), nil
}

func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, fs.ErrNotExist):
		return "not exist"
	case errors.Is(err, unix.ENOTDIR):
		return "not a directory"
	}
	return "other"
}

// TestResolverSameAsEvalSymlinks: one resolver, whose ancestors are
// lstat'ed once, resolves every kind of path as filepath.EvalSymlinks
// does: a link among the ancestors, a link at the end (to a file, to a
// directory, dangling), a missing file or ancestor, a file as an
// ancestor, "..", a trailing slash, a relative path.
func TestResolverSameAsEvalSymlinks(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) string { return filepath.Join(root, p) }
	for _, d := range []string{"home/.config/app", "real/dir", "other"} {
		if err := os.MkdirAll(mk(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"home/.env", "home/.config/app/key", "real/dir/secret", "other/file"} {
		if err := os.WriteFile(mk(f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"home/.ssh":        mk("real/dir"),     // a directory link
		"home/.aws":        "../real/dir",      // relative, with ..
		"home/.netrc":      mk("other/file"),   // a file link
		"home/.gone":       mk("nowhere/file"), // dangling
		"home/.config/lnk": "app",
	} {
		if err := os.Symlink(target, mk(link)); err != nil {
			t.Fatal(err)
		}
	}
	paths := []string{
		mk("home/.env"), mk("home/.config/app/key"),
		mk("home/.ssh"), mk("home/.ssh/secret"), mk("home/.aws/secret"),
		mk("home/.netrc"), mk("home/.gone"), mk("home/.missing"),
		mk("home/nodir/file"), mk("home/.env/below"),
		mk("home/.config/lnk/key"), mk("home/.config/../.env"),
		mk("home/.env") + "/", mk("home/.ssh") + "/", "/", root,
		"relative/path",
	}
	r := newResolver()
	for range 2 { // the second pass answers from the resolver's memory
		for _, p := range paths {
			got, gerr := r.stat(p, 0)
			want, werr := statEval(p)
			if errClass(gerr) != errClass(werr) {
				t.Errorf("%s: error %v, want like %v", p, gerr, werr)
				continue
			}
			if gerr == nil && got != want {
				t.Errorf("%s: %+v, want %+v", p, got, want)
			}
		}
	}
}
