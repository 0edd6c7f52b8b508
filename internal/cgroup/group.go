package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group is one cgroup v2 directory.
type Group struct {
	Path  string // absolute path of the directory
	ID    uint64 // inode number: the kernel's cgroup id
	Level int    // depth below the hierarchy root (the root is level 0)
}

// Create makes the directory parent/name (parent relative to the cgroup v2
// mount, created as needed) and returns it. It fails if it already exists, so
// two sandboxes never share a cgroup.
func Create(parent, name string) (*Group, error) {
	root, err := Mountpoint()
	if err != nil {
		return nil, err
	}
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("create cgroup: invalid name %q", name)
	}
	dir := filepath.Join(root, parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup parent %s: %w", dir, err)
	}
	path := filepath.Join(dir, name)
	if err := os.Mkdir(path, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	g, err := open(root, path)
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	return g, nil
}

// Open returns the existing cgroup at the absolute path.
func Open(path string) (*Group, error) {
	root, err := Mountpoint()
	if err != nil {
		return nil, err
	}
	return open(root, path)
}

func open(root, path string) (*Group, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("open cgroup %s: not below the cgroup v2 mount %s", path, root)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", path, err)
	}
	level := 0
	if rel != "." {
		level = strings.Count(rel, "/") + 1
	}
	return &Group{Path: path, ID: st.Ino, Level: level}, nil
}

// OpenFD opens the directory for clone3's CLONE_INTO_CGROUP
// (SysProcAttr.UseCgroupFD), which starts a child inside the cgroup with no
// window in which it runs outside.
func (g *Group) OpenFD() (*os.File, error) {
	f, err := os.OpenFile(g.Path, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", g.Path, err)
	}
	return f, nil
}

// PIDs lists the processes in the group and all groups beneath it.
func (g *Group) PIDs() ([]int, error) {
	var pids []int
	err := filepath.WalkDir(g.Path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		f, err := os.Open(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
			if err == nil {
				pids = append(pids, pid)
			}
		}
		return sc.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list processes of %s: %w", g.Path, err)
	}
	return pids, nil
}

// Kill sends SIGKILL to every process in the group and beneath it and waits
// (up to timeout) until the group is unpopulated. It uses cgroup.kill where
// the kernel has it (5.14+), which also catches processes forking while it
// runs. Waiting for "populated 0" rather than an empty cgroup.procs matters:
// a multi-threaded process leaves cgroup.procs as soon as its threads start
// exiting, but the group stays busy (rmdir fails with EBUSY) until the last
// thread is gone.
func (g *Group) Kill(timeout time.Duration) error {
	if err := os.WriteFile(filepath.Join(g.Path, "cgroup.kill"), []byte("1"), 0); err != nil {
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("kill cgroup %s: %w", g.Path, err)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		pop, err := g.Populated()
		if err != nil {
			return err
		}
		if !pop {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill cgroup %s: tasks still there %s after SIGKILL (uninterruptible sleep?)", g.Path, timeout)
		}
		pids, err := g.PIDs()
		if err != nil {
			return err
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(time.Millisecond)
	}
}

// Populated reports whether any task is in the group or beneath it, from
// the "populated" key of cgroup.events. A group that is gone is not.
func (g *Group) Populated() (bool, error) {
	file := filepath.Join(g.Path, "cgroup.events")
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", file, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "populated "); ok {
			return v == "1", nil
		}
	}
	return false, fmt.Errorf("%s has no populated key", file)
}

// Freeze stops (true) or resumes (false) every process in the group.
func (g *Group) Freeze(frozen bool) error {
	v := "0"
	if frozen {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(g.Path, "cgroup.freeze"), []byte(v), 0); err != nil {
		return fmt.Errorf("freeze cgroup %s: %w", g.Path, err)
	}
	return nil
}

// Remove kills what is left in the group and removes it with every group a
// sandboxed process created beneath it. Removing a group that is already
// gone is not an error.
func (g *Group) Remove() error {
	if _, err := os.Stat(g.Path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := g.Kill(5 * time.Second); err != nil {
		return err
	}
	var dirs []string
	err := filepath.WalkDir(g.Path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", g.Path, err)
	}
	// Deepest first: a cgroup directory can only go once it has no children.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
		}
	}
	return nil
}

// ProcessCgroup returns the cgroup v2 path (relative to the hierarchy root,
// starting with "/") of a process, from /proc/PID/cgroup.
func ProcessCgroup(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("read cgroup of pid %d: %w", pid, err)
	}
	cg, ok := V2Path(data)
	if !ok {
		return "", fmt.Errorf("read cgroup of pid %d: no cgroup v2 entry", pid)
	}
	return string(cg), nil
}

// V2Path returns the cgroup v2 path in the contents of a /proc/PID/cgroup
// file (the "0::/a/b" line), without copying: callers on a hot path read
// the file into a buffer of their own.
func V2Path(procCgroup []byte) ([]byte, bool) {
	for data := procCgroup; len(data) > 0; {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if rest, ok := bytes.CutPrefix(line, []byte("0::")); ok {
			return rest, true
		}
	}
	return nil, false
}

// Within reports whether the cgroup path cg is dir or a cgroup below it.
func Within(cg, dir string) bool {
	return cg == dir || strings.HasPrefix(cg, dir) && len(cg) > len(dir) && cg[len(dir)] == '/'
}
