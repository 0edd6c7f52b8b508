//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

// DefaultParent is the cgroup, below the cgroup v2 mount, that holds every
// sandbox. Keeping them together lets a run find what a crashed run left.
const DefaultParent = "aigate"

// killTimeout bounds how long Close waits for the sandbox's processes to die.
const killTimeout = 5 * time.Second

// Config describes a sandbox to create.
type Config struct {
	Backend enforce.Backend
	Policy  *policy.Compiled
	// Mode overrides Policy.Mode when set (aigate run --audit).
	Mode policy.Mode
	// Parent is the cgroup holding the sandbox, relative to the cgroup v2
	// mount; DefaultParent when empty.
	Parent string
	// Owner is the pid recorded in the sandbox's name, whose death marks
	// the sandbox stale; os.Getpid() when zero.
	Owner int
	// Home and ProjectRoot are the sandbox owner's, passed to the backend
	// (enforce.Sandbox) for the name rules it must find on disk.
	Home        string
	ProjectRoot string
	// ExecDirs are where exec name rules are resolved (the owner's PATH
	// plus the standard directories); nil lets the backend decide.
	ExecDirs []string
	// LandlockCovers are the deny_write trees the command's Landlock
	// domain keeps links, renames and symlinks out of
	// (api.CreateRequest.LandlockCovers).
	LandlockCovers []string
	// UID is the uid the command runs as (enforce.Sandbox.UID); 0 when
	// unknown.
	UID uint32
	// Enter, when set, places the sandbox's first process during Create,
	// beside the backend's work (enforce.Sandbox.Enter): it is called
	// once, with a function that moves a pid into the cgroup, and Create
	// fails when it fails. The process must run nothing that the sandbox
	// confines before Create has returned. When Create fails after the
	// move, the process is killed with the cgroup.
	Enter func(move func(pid int) error) error
}

// Sandbox is a created cgroup that its backend confines.
type Sandbox struct {
	// Info is what the backend was given.
	Info enforce.Sandbox
	// Warnings are things the user should know that did not stop the
	// sandbox: resource limits the system cannot apply, stale sandboxes
	// that were cleaned up.
	Warnings []string

	mu      sync.Mutex // guards group and closing; held while moving a process in
	group   *cgroup.Group
	closing bool // Close has begun: nothing may enter the cgroup any more
	backend enforce.Backend
	added   bool
	started bool
}

// Create makes the sandbox cgroup, applies the policy's resource limits,
// and registers it with the backend. When Create returns, every process
// started with Start is confined. On error nothing is left behind.
func Create(ctx context.Context, cfg Config) (*Sandbox, error) {
	if cfg.Backend == nil || cfg.Policy == nil {
		return nil, errors.New("create sandbox: no backend or no policy")
	}
	if cfg.Parent == "" {
		cfg.Parent = DefaultParent
	}
	if cfg.Owner == 0 {
		cfg.Owner = os.Getpid()
	}
	mode := cfg.Mode
	if mode == "" {
		mode = cfg.Policy.Mode
	}
	if mode == "" {
		mode = policy.ModeEnforce
	}

	root, err := cgroup.Mountpoint()
	if err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	sb := &Sandbox{backend: cfg.Backend}
	id, group, swept, err := allocate(root, cfg.Parent, cfg.Owner)
	if err != nil {
		return nil, err
	}
	sb.group = group
	sb.Warnings = append(sb.Warnings, swept...)

	warns, err := applyLimits(root, group, cfg.Policy.Limits)
	sb.Warnings = append(sb.Warnings, warns...)
	if err != nil {
		return nil, errors.Join(err, sb.removeGroup())
	}

	sb.Info = enforce.Sandbox{
		ID:          id,
		Name:        filepath.Base(group.Path),
		CgroupID:    group.ID,
		CgroupPath:  group.Path,
		Policy:      cfg.Policy,
		Mode:        mode,
		Home:        cfg.Home,
		ProjectRoot: cfg.ProjectRoot,
		ExecDirs:    cfg.ExecDirs,
		// The fanotify backend relies on it for the trees' files.
		LandlockCovers: cfg.LandlockCovers,
		UID:            cfg.UID,
	}
	var enter func() error
	if cfg.Enter != nil {
		var once sync.Once
		var err error
		enter = func() error {
			once.Do(func() { err = cfg.Enter(sb.moveProcs) })
			return err
		}
		sb.Info.Enter = enter
	}
	err = cfg.Backend.Add(ctx, &sb.Info)
	sb.Info.Enter = nil
	if err != nil {
		err = fmt.Errorf("enforce policy on sandbox %s with the %s backend: %w", sb.Info.Name, cfg.Backend.Name(), err)
		return nil, errors.Join(err, sb.removeGroup()) // kills what Enter moved in
	}
	sb.added = true
	if enter != nil {
		// A backend that did not call it (only Composite does): now.
		if err := enter(); err != nil {
			return nil, errors.Join(err, sb.Close())
		}
	}
	if l, ok := cfg.Backend.(enforce.Limited); ok {
		sb.Warnings = append(sb.Warnings, l.Unenforced(&sb.Info)...)
	}
	return sb, nil
}

// Path is the sandbox's cgroup directory (also after Close removed it).
func (s *Sandbox) Path() string { return s.Info.CgroupPath }

// PIDs lists the processes in the sandbox; none once it is closed.
func (s *Sandbox) PIDs() ([]int, error) {
	s.mu.Lock()
	g := s.group
	s.mu.Unlock()
	if g == nil {
		return nil, nil
	}
	return g.PIDs()
}

// Close kills every process left in the sandbox (background children of the
// tool included), stops enforcing and removes the cgroup. The processes are
// gone before enforcement ends, so none of them ever runs unconfined: when
// one survives the kill, Close keeps enforcing, keeps the cgroup and
// returns the error (a later Close tries again). Close is idempotent.
//
// Close and Move exclude each other: a process moved in before Close
// began is killed with the rest, and none can be moved in afterwards,
// where the kill would miss it and it would outlive enforcement.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	if s.group == nil {
		return nil
	}
	if err := s.group.Kill(killTimeout); err != nil {
		return err
	}
	var errs []error
	if s.added {
		if err := s.backend.Remove(s.Info.ID); err != nil {
			errs = append(errs, fmt.Errorf("stop enforcing sandbox %s: %w", s.Info.Name, err))
		}
		s.added = false
	}
	if err := s.removeGroup(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by Move once the sandbox is being closed.
var ErrClosed = errors.New("the sandbox has ended")

// Move moves the process pid (all its threads) into the sandbox, as root
// writing cgroup.procs. It fails with ErrClosed once Close has begun.
func (s *Sandbox) Move(pid int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.group == nil || !s.added {
		return ErrClosed
	}
	return s.moveProcs(pid)
}

// moveProcs writes pid to the cgroup's cgroup.procs: Move without its
// exclusion of Close, for Create, before anyone else has the sandbox.
func (s *Sandbox) moveProcs(pid int) error {
	procs := filepath.Join(s.group.Path, "cgroup.procs")
	if err := os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move process %d into sandbox %s: %w", pid, s.Info.Name, err)
	}
	return nil
}

// Populated reports whether any task is in the sandbox's cgroup (or below
// it), from the kernel's own count in cgroup.events. A removed sandbox is
// not populated.
func (s *Sandbox) Populated() (bool, error) {
	return (&cgroup.Group{Path: s.Info.CgroupPath}).Populated()
}

func (s *Sandbox) removeGroup() error {
	if s.group == nil {
		return nil
	}
	err := s.group.Remove()
	if err == nil {
		s.mu.Lock()
		s.group = nil
		s.mu.Unlock()
	}
	return err
}

// pidAlive reports whether a process with the pid exists and has not exited.
// EPERM from kill means it exists but belongs to someone else; a zombie has
// exited and only waits for its parent to reap it.
func pidAlive(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, so the
	// state follows the last ')'.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		switch s[i+2] {
		case 'Z', 'X', 'x':
			return false
		}
	}
	return true
}
