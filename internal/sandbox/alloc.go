//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"golang.org/x/sys/unix"
)

// A sandbox's cgroup is named s<ID>-p<owner pid>: the ID is the policy id in
// the backend's maps, the owner is the aigate process (run or agent) that
// confines it. A directory whose owner is dead was left by a crash.

// Name returns the cgroup directory name for a sandbox.
func Name(id uint32, owner int) string {
	return fmt.Sprintf("s%d-p%d", id, owner)
}

// ParseName is the inverse of Name.
func ParseName(name string) (id uint32, owner int, ok bool) {
	rest, ok := strings.CutPrefix(name, "s")
	if !ok {
		return 0, 0, false
	}
	idStr, ownerStr, ok := strings.Cut(rest, "-p")
	if !ok {
		return 0, 0, false
	}
	id64, err1 := strconv.ParseUint(idStr, 10, 32)
	pid, err2 := strconv.Atoi(ownerStr)
	if err1 != nil || err2 != nil || id64 == 0 || pid <= 0 || Name(uint32(id64), pid) != name {
		return 0, 0, false
	}
	return uint32(id64), pid, true
}

// maxRotatingID bounds the IDs allocate hands out (the loader takes ids
// below 2^28): after it, allocation starts again at 1.
const maxRotatingID = 1 << 16

// lastID is, per parent directory, the ID this process handed out last.
// A long-lived agent is the owner of every sandbox it creates, so reusing
// the lowest free ID named consecutive sandboxes alike (s1-p1960 twice,
// issue 13), and their events, metrics and logs could not be told apart.
var (
	lastMu sync.Mutex
	lastID = map[string]uint32{}
)

// allocate picks the next sandbox ID after the one this process handed out
// last in parent, skipping those of live sandboxes (the lowest free one
// after a wrap), and creates the cgroup, under an exclusive flock on the
// parent cgroup directory, so that concurrent runs (and the agent) never
// hand out the same ID. Stale sandboxes found on the way are removed; the
// returned notes say so.
func allocate(root, parent string, owner int) (uint32, *cgroup.Group, []string, error) {
	dir := filepath.Join(root, parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, nil, nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	lock, err := os.Open(dir)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return 0, nil, nil, fmt.Errorf("lock cgroup %s: %w", dir, err)
	}
	// Closing the file releases the lock.

	notes, used, err := sweep(dir)
	if err != nil {
		return 0, nil, notes, err
	}
	lastMu.Lock()
	defer lastMu.Unlock()
	id := lastID[dir] + 1
	for used[id] {
		id++
	}
	if id >= maxRotatingID {
		for id = 1; used[id]; id++ {
		}
	}
	g, err := cgroup.Create(parent, Name(id, owner))
	if err != nil {
		return 0, nil, notes, fmt.Errorf("create sandbox: %w", err)
	}
	lastID[dir] = id
	return id, g, notes, nil
}

// Sweep removes the sandboxes below parent (relative to the cgroup v2
// mount) whose owner is dead, killing what still runs in them: with its
// owner gone, nothing enforces their policy any more. It returns a note per
// sandbox removed.
func Sweep(parent string) ([]string, error) {
	root, err := cgroup.Mountpoint()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, parent)
	lock, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock cgroup %s: %w", dir, err)
	}
	notes, _, err := sweep(dir)
	return notes, err
}

// Left reports whether process pid is alive or a sandbox cgroup it created
// is still below parent (relative to the cgroup v2 mount), alive or not
// yet removed: until neither holds, what that process pinned for its
// sandboxes may still be what confines them.
func Left(parent string, pid int) bool {
	if pidAlive(pid) {
		return true
	}
	root, err := cgroup.Mountpoint()
	if err != nil {
		return true
	}
	entries, err := os.ReadDir(filepath.Join(root, parent))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	for _, e := range entries {
		if _, owner, ok := ParseName(e.Name()); ok && owner == pid {
			return true
		}
	}
	return false
}

// Abandoned lists the sandboxes below parent (relative to the cgroup v2
// mount) whose owner and adopter are both gone: what Sweep would remove
// now. Live sandboxes, another run's or agent's, are not listed.
func Abandoned(parent string) []string {
	root, err := cgroup.Mountpoint()
	if err != nil {
		return nil
	}
	dir := filepath.Join(root, parent)
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if _, owner, ok := ParseName(e.Name()); ok && e.IsDir() &&
			!pidAlive(owner) && !adopterAlive(filepath.Join(dir, e.Name())) {
			names = append(names, e.Name())
		}
	}
	return names
}

// sweep removes stale sandboxes in dir and returns the IDs still in use. A
// stale sandbox that cannot be removed keeps its ID and is reported in the
// notes: it must not stop a new sandbox from starting. The caller holds the
// lock.
func sweep(dir string) ([]string, map[uint32]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list sandboxes in %s: %w", dir, err)
	}
	used := make(map[uint32]bool)
	var notes []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		id, owner, ok := ParseName(e.Name())
		if !ok {
			continue
		}
		if pidAlive(owner) || adopterAlive(filepath.Join(dir, e.Name())) {
			used[id] = true
			continue
		}
		path := filepath.Join(dir, e.Name())
		g, err := cgroup.Open(path)
		if err != nil {
			used[id] = true
			notes = append(notes, fmt.Sprintf("could not remove stale sandbox: %v", err))
			continue
		}
		pids, _ := g.PIDs()
		err = g.Kill(killTimeout)
		if err == nil {
			err = g.Remove()
		}
		if err != nil {
			// Keep the ID reserved: its cgroup still exists.
			used[id] = true
			notes = append(notes, fmt.Sprintf("could not remove stale sandbox: %v", err))
			continue
		}
		note := fmt.Sprintf("removed sandbox %s left by aigate process %d, which is gone", e.Name(), owner)
		if len(pids) > 0 {
			note += fmt.Sprintf(" (killed %d leftover processes that were no longer confined)", len(pids))
		}
		notes = append(notes, note)
	}
	return notes, used, nil
}
