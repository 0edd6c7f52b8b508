package gitdirs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Action is one change Defuse made to a git directory; the original is
// kept at Aside, so nothing is lost.
type Action struct {
	// Path is what was changed or moved: ".../.git/modules/sub/config".
	Path string
	// Aside is where the original is now, beside it.
	Aside string
	// What says what was done: "core.fsmonitor removed", "moved aside".
	What string
}

// Restore is the command that undoes a, for the user who wanted it.
func (a Action) Restore() string {
	return "mv " + shellQuote(a.Aside) + " " + shellQuote(a.Path)
}

// DefuseOptions are who Defuse acts for and what it leaves alone.
type DefuseOptions struct {
	// UID must own the git directory and each file changed (-1: any).
	UID int
	// Known are the git directories there before the sandbox, resolved
	// (Result.GitDirs of the scan at the run's start): a commondir
	// naming one of them is git's own (a linked worktree's).
	Known map[string]bool
	// Protected says whether a deny_write rule covers a path: such a
	// file is left alone, so that aigate never changes for the sandbox
	// what the sandbox may not change (a .git file can point anywhere).
	Protected func(path string) bool
	Now       time.Time
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+~:@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// DefuseNew scans the project again (o, as Scan) and defuses each git
// directory in it that is not among do.Known, and that lies in the
// project or in a known git directory (a new submodule's is in
// .git/modules): one elsewhere, which a .git file planted in the project
// names, is only reported, since the sandbox may not have been able to
// write there. Run it as the user, once the sandbox is gone.
func DefuseNew(o Options, do DefuseOptions) ([]Action, error) {
	var acts []Action
	var errs []error
	root := o.ProjectRoot
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r // git directories are resolved (a home under /var/home)
	}
	for _, g := range Scan(o).GitDirs {
		if do.Known[g] {
			continue
		}
		if !within(g, root) && !withinAny(g, do.Known) {
			if r := Risky(g); len(r) > 0 {
				errs = append(errs, fmt.Errorf("%s (%s), outside the project, is named by a .git file or commondir the sandbox made: left alone, check it", g, strings.Join(r, ", ")))
			}
			continue
		}
		a, err := Defuse(g, do)
		acts = append(acts, a...)
		errs = append(errs, err)
	}
	return acts, errors.Join(errs...)
}

func withinAny(p string, dirs map[string]bool) bool {
	for d := range dirs {
		if within(p, d) {
			return true
		}
	}
	return false
}

// Defuse makes the git directory g, which a sandbox made, unable to make
// git outside run a program, losing nothing: the keys of config and
// config.worktree Risky names are removed (the file rewritten atomically
// with every other byte kept, the original kept beside it as
// config.aigate-<time>), hooks not named *.sample are moved to
// hooks.aigate-<time>/, a commondir to commondir.aigate-<time> unless
// keep says its target is a git directory that was there before (a
// linked worktree's points at the main repository's); a config, hooks or
// commondir that is a link, or not a plain file or directory, is moved
// aside as it is, its target untouched.
//
// The sandbox controlled this tree and another sandbox of the user may
// still run: no symlink is followed (g is opened with none in its path,
// the rest relative to it with O_NOFOLLOW), no file is written in place
// (a hard link to a file elsewhere keeps its content), and g must belong
// to uid. Run it as that user.
func Defuse(g string, o DefuseOptions) ([]Action, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, g, &unix.OpenHow{
		Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", g, err)
	}
	d := &defuser{g: g, fd: fd, o: o, stamp: ".aigate-" + strconv.FormatInt(o.Now.Unix(), 10)}
	defer unix.Close(fd)
	if err := d.owned(fd, g); err != nil {
		return nil, err
	}
	var errs []error
	for _, f := range []string{"config", "config.worktree"} {
		errs = append(errs, d.config(f))
	}
	errs = append(errs, d.hooks(), d.commondir())
	return d.done, errors.Join(errs...)
}

type defuser struct {
	g     string
	fd    int
	o     DefuseOptions
	stamp string // ".aigate-<unix time>"
	done  []Action
}

func (d *defuser) owned(fd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if d.o.UID >= 0 && int(st.Uid) != d.o.UID {
		return fmt.Errorf("%s belongs to uid %d, not %d: left alone", name, st.Uid, d.o.UID)
	}
	return nil
}

// aside moves name (a file, link or directory of g) to a free name
// beside it, without replacing anything.
func (d *defuser) aside(name, what string) error {
	if err := d.mayChange(name); err != nil {
		return err
	}
	to, err := d.free(name)
	if err != nil {
		return err
	}
	if err := unix.Renameat2(d.fd, name, d.fd, to, unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("move %s aside: %w", filepath.Join(d.g, name), err)
	}
	d.done = append(d.done, Action{Path: filepath.Join(d.g, name), Aside: filepath.Join(d.g, to), What: what})
	return nil
}

// mayChange refuses a path a deny_write rule covers.
func (d *defuser) mayChange(name string) error {
	p := filepath.Join(d.g, name)
	if d.o.Protected != nil && d.o.Protected(p) {
		return fmt.Errorf("%s: a deny_write rule covers it: left alone", p)
	}
	return nil
}

// free is name+stamp, or with "-N" after it, that does not exist in g.
func (d *defuser) free(name string) (string, error) {
	for i := 0; i < 100; i++ {
		to := name + d.stamp
		if i > 0 {
			to += "-" + strconv.Itoa(i)
		}
		var st unix.Stat_t
		err := unix.Fstatat(d.fd, to, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			return to, nil
		}
		if err != nil {
			return "", fmt.Errorf("stat %s: %w", filepath.Join(d.g, to), err)
		}
	}
	return "", fmt.Errorf("no free name for %s beside it", filepath.Join(d.g, name))
}

// openNoFollow opens name in g for reading, refusing a link; kind is
// what it found when it refused ("a link", "not a file").
func (d *defuser) openNoFollow(name string, flags int) (*os.File, string, error) {
	fd, err := unix.Openat(d.fd, name, flags|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, "", nil
	case errors.Is(err, unix.ELOOP):
		target := make([]byte, 4096)
		n, _ := unix.Readlinkat(d.fd, name, target)
		return nil, "a link to " + string(target[:max(n, 0)]), nil
	case errors.Is(err, unix.ENOTDIR):
		return nil, "not a directory", nil
	case err != nil:
		return nil, "", fmt.Errorf("open %s: %w", filepath.Join(d.g, name), err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.g, name)), "", nil
}

// config removes the risky keys of the config file name.
func (d *defuser) config(name string) error {
	f, odd, err := d.openNoFollow(name, 0)
	if err != nil || odd != "" {
		if odd != "" {
			return d.aside(name, odd+", moved aside")
		}
		return err
	}
	if f == nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if !fi.Mode().IsRegular() {
		return d.aside(name, "not a file, moved aside")
	}
	if fi.Size() > maxSmall {
		return d.aside(name, "larger than aigate reads, moved aside")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSmall+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	clean, removed := StripRisky(data)
	if len(removed) == 0 {
		return nil
	}
	return d.replace(name, clean, fi.Mode().Perm(), strings.Join(removed, ", ")+" removed")
}

// replace puts data at name atomically and keeps the file that was
// there beside it: a new file is written, then exchanged with name
// (renameat2 RENAME_EXCHANGE: name never missing), then the old one
// takes its name beside it. Where the file system cannot exchange, the
// old file is moved aside first.
func (d *defuser) replace(name string, data []byte, perm os.FileMode, what string) error {
	if err := d.mayChange(name); err != nil {
		return err
	}
	tmp, err := d.free(name + ".new")
	if err != nil {
		return err
	}
	fd, err := unix.Openat(d.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return fmt.Errorf("create %s: %w", filepath.Join(d.g, tmp), err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.g, tmp))
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	to, err := d.free(name)
	if err == nil {
		if err = unix.Renameat2(d.fd, tmp, d.fd, name, unix.RENAME_EXCHANGE); err == nil {
			err = unix.Renameat2(d.fd, tmp, d.fd, to, unix.RENAME_NOREPLACE)
		} else if err = unix.Renameat2(d.fd, name, d.fd, to, unix.RENAME_NOREPLACE); err == nil {
			err = unix.Renameat2(d.fd, tmp, d.fd, name, unix.RENAME_NOREPLACE)
		}
	}
	if err != nil {
		_ = unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("replace %s: %w", filepath.Join(d.g, name), err)
	}
	d.done = append(d.done, Action{Path: filepath.Join(d.g, name), Aside: filepath.Join(d.g, to), What: what})
	return nil
}

// hooks moves the hooks not named *.sample to hooks.aigate-<time>/.
func (d *defuser) hooks() error {
	f, odd, err := d.openNoFollow("hooks", unix.O_DIRECTORY)
	if odd != "" {
		return d.aside("hooks", odd+", moved aside")
	}
	if f == nil || err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	var run []string
	for _, n := range names {
		if !strings.HasSuffix(n, ".sample") {
			run = append(run, n)
		}
	}
	if len(run) == 0 {
		return nil
	}
	to, err := d.free("hooks")
	if err != nil {
		return err
	}
	if err := unix.Mkdirat(d.fd, to, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Join(d.g, to), err)
	}
	for _, n := range run {
		if err := d.mayChange("hooks/" + n); err != nil {
			return err
		}
		if err := unix.Renameat2(int(f.Fd()), n, d.fd, to+"/"+n, unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("move %s aside: %w", filepath.Join(f.Name(), n), err)
		}
		d.done = append(d.done, Action{Path: filepath.Join(f.Name(), n), Aside: filepath.Join(d.g, to, n), What: "hook moved aside"})
	}
	return nil
}

// commondir moves the commondir aside unless it names a git directory
// keep accepts.
func (d *defuser) commondir() error {
	f, odd, err := d.openNoFollow("commondir", 0)
	if odd != "" {
		return d.aside("commondir", odd+", moved aside")
	}
	if f == nil || err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSmall))
	f.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	c := strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0])
	if c != "" && !filepath.IsAbs(c) {
		c = filepath.Join(d.g, c)
	}
	if c != "" {
		if r, err := filepath.EvalSymlinks(c); err == nil && d.o.Known[filepath.Clean(r)] {
			return nil
		}
	}
	return d.aside("commondir", "commondir ("+c+") moved aside")
}
