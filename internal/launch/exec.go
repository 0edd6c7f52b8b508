//go:build linux

package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/seccomp"
)

// Why an exec helper, and not clone3(CLONE_INTO_CGROUP) with a cgroup fd
// the agent passes over SCM_RIGHTS: the kernel lets a process clone into a
// cgroup only with write access to cgroup.procs of the target AND of the
// common ancestor of its own cgroup and the target. An unprivileged client
// in its login cgroup shares only the root with the sandbox, so it would
// need a delegated subtree (chowned cgroup.procs, as systemd does), and
// then the sandboxed tool, running as the same user, could move itself
// back out of the sandbox by writing its pid to the subtree's cgroup.procs
// (measured: docs/agent.md). So no user ever gets write access to a
// cgroup.procs. Instead the client starts its child as a copy of aigate
// that waits on a pipe; the agent, as root, moves that process into the
// sandbox; only then does the helper exec the command. The command's first
// instruction runs confined; what ran before it in that process was aigate.

const (
	helperEnv   = "AIGATE_SANDBOX_EXEC" // the command's path
	helperFDEnv = "AIGATE_SANDBOX_FD"   // the pipe's descriptor number
	goByte      = 'g'
)

// The helper can be started before its sandbox exists (Prepare), so that
// its start-up overlaps the agent's work; what it applies before the exec
// depends on the sandbox (its backend, its mode), so it comes with the
// go-ahead: the byte goByte, then goAhead as JSON, then the end of the
// pipe. Anything else (the pipe closed early, a short or bad message) and
// the helper exits without exec'ing.
type goAhead struct {
	// Landlock is the domain the command enters.
	Landlock landlock.Options `json:"landlock"`
	// Seccomp is the filter (internal/seccomp) the command gets; none
	// when it refuses nothing (a BPF LSM program refuses it instead).
	Seccomp seccomp.Refuse `json:"seccomp"`
}

// maxGoAhead bounds the go-ahead message the helper reads.
const maxGoAhead = 1 << 20

// waitDelay bounds how long Child.Wait waits for the command's output
// pipes after it exited.
const waitDelay = time.Second

// helperExitNoGo is the helper's exit status when it was never told to go
// on: the command was not executed.
const helperExitNoGo = 125

func init() {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(runHelper(path))
	}
}

// runHelper waits for the go-ahead on its pipe and execs path. It only
// returns on failure.
func runHelper(path string) int {
	fdNum, err := strconv.Atoi(os.Getenv(helperFDEnv))
	if err != nil || fdNum < 3 {
		fmt.Fprintf(os.Stderr, "aigate: exec helper: bad %s\n", helperFDEnv)
		return helperExitNoGo
	}
	pipe := os.NewFile(uintptr(fdNum), "go-ahead")
	msg, err := io.ReadAll(io.LimitReader(pipe, maxGoAhead+1))
	pipe.Close()
	if err != nil || len(msg) == 0 || msg[0] != goByte || len(msg) > maxGoAhead {
		// The client gave up (the agent refused, or it was killed).
		return helperExitNoGo
	}
	var ga goAhead
	if err := json.Unmarshal(msg[1:], &ga); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: exec helper: bad go-ahead: %v\n", err)
		return helperExitNoGo
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, helperEnv+"=") || strings.HasPrefix(kv, helperFDEnv+"=") {
			continue
		}
		env = append(env, kv)
	}
	// no_new_privs is per thread and kept by execve: set it on the thread
	// that execs.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: set no_new_privs: %v\n", err)
		return helperExitNoGo
	}
	if err := denyTerminalInjection(); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: %v\n", err)
		return helperExitNoGo
	}
	// Entered only now, in the sandbox: the agent placed this process
	// while it was still unconfined aigate (its checks read our /proc),
	// and the domain must be in place before the command's first
	// instruction. Per thread, like no_new_privs: this thread execs.
	if err := enterLandlock(ga.Landlock); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: %v\n", err)
		return helperExitNoGo
	}
	if ga.Seccomp.Any() {
		if err := seccomp.Install(ga.Seccomp); err != nil {
			fmt.Fprintf(os.Stderr, "aigate: confine the command: %v\n", err)
			return helperExitNoGo
		}
	}
	// The command gets stdin, stdout and stderr only. aigate's own
	// descriptors (an embedded agent's fanotify group, BPF maps and links,
	// its socket) are close-on-exec already; this covers what aigate itself
	// inherited from whoever started it: a descriptor opened outside the
	// sandbox (exec 9<~/.ssh/id_rsa in the user's shell, a root service's
	// files) would reach files the policy denies without an open to check.
	// Marked close-on-exec rather than closed: the Go runtime may still
	// hold some of them until the exec.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: close inherited descriptors: %v\n", err)
		return helperExitNoGo
	}
	err = syscall.Exec(path, os.Args, env)
	fmt.Fprintf(os.Stderr, "aigate: exec %s: %v\n", path, err)
	if errors.Is(err, os.ErrNotExist) {
		return 127
	}
	return 126
}

// enterLandlock fences the helper (and so the command) off from the
// processes outside its domain and, with a home in opts, limits its writes
// there (package landlock). Without Landlock in the kernel it fails only
// when opts require it: the LSM backend refuses the same ptrace and
// signals with its own hooks.
func enterLandlock(opts landlock.Options) error {
	if landlock.ABI() > 0 {
		// Best effort: a tool that finds no ~/.cache copes as it would
		// anywhere; the run must not fail for it.
		_ = landlock.CreateMissing(opts)
	}
	rs, _ := landlock.Plan(opts, landlock.OSDirs{})
	if err := checkCovered(opts, rs, landlock.ABI(), filepath.EvalSymlinks); err != nil {
		return err
	}
	_, err := landlock.Restrict(rs)
	if errors.Is(err, landlock.ErrUnavailable) && !opts.Required && len(opts.Covered) == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("confine the command: %w", err)
	}
	return nil
}

// checkCovered refuses a domain rs that no longer covers each tree of
// opts.Covered (landlock.Covered) on a kernel of Landlock ABI abi: the
// fanotify backend protects those trees by their directories alone,
// trusting the domain to keep links and renames out of them, and the
// filesystem may have changed since run checked (a rule's path now a
// symlink into one).
func checkCovered(opts landlock.Options, rs landlock.Ruleset, abi int, resolve landlock.Resolver) error {
	if len(opts.Covered) == 0 {
		return nil
	}
	eff := rs.Effective(abi)
	for _, c := range opts.Covered {
		if abi == 0 || !landlock.Covered(eff, c, resolve) {
			return fmt.Errorf("confine the command: its Landlock domain would not keep links and renames out of %s, as the agent was told when the sandbox was made (a path changed since?); run it again", c)
		}
	}
	return nil
}

// refusals is what the command's seccomp filter refuses. BPF LSM refuses
// other socket families itself, and new user namespaces from Linux 6.1
// (UsernsHook), with events that a filter would hide, sees io_uring's
// operations, and refuses sends on a socket passed in from outside; on
// fanotify, where the receiver of such a socket is killed instead, no
// other process may share its descriptor table (SharedFiles). Audit mode
// refuses nothing.
func refusals(s *api.Session) seccomp.Refuse {
	sb := s.Sandbox
	if sb.Mode == policy.ModeAudit {
		return seccomp.Refuse{}
	}
	userns := !sb.Userns && !sb.UsernsHook
	if sb.Backend == "lsm" {
		return seccomp.Refuse{Userns: userns}
	}
	return seccomp.Refuse{Families: true, Userns: userns, IOUring: !sb.IOUring, SharedFiles: true}
}

// Start starts cmd in session s's sandbox: as a waiting helper first,
// which the agent moves into the sandbox, then exec'ed into cmd. cmd may
// carry credentials and the terminal; Start sets Pdeathsig (SIGKILL: if
// the client dies, the command does not run on without it) and runs the
// helper with no_new_privs. A session starts one command.
func Start(s *api.Session, cmd *exec.Cmd) (*sandbox.Child, error) {
	h, err := Prepare(cmd)
	if err != nil {
		return nil, err
	}
	return h.Start(s)
}

// Helper is an exec helper started by Prepare, waiting for its sandbox.
type Helper struct {
	cmd    *exec.Cmd
	child  *sandbox.Child
	w      *os.File // the go-ahead pipe; nil once used or aborted
	target string
}

// Prepare starts cmd's exec helper before its sandbox exists, so that its
// start-up overlaps the sandbox's creation. The helper waits on its pipe
// for Start's go-ahead and runs nothing of cmd until then; the caller must
// end it with Start or Abort on every path. The process is the caller's
// child, as the agent's place requires.
func Prepare(cmd *exec.Cmd) (*Helper, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start in sandbox: find aigate's own binary: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start in sandbox: %w", err)
	}
	defer r.Close()
	target := cmd.Path
	cmd.Path = exe
	if len(cmd.Args) == 0 {
		cmd.Args = []string{target}
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)],
		helperEnv+"="+target,
		helperFDEnv+"="+strconv.Itoa(3+len(cmd.ExtraFiles)))
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if cmd.WaitDelay == 0 {
		// When stdio are not files, Wait also waits for the goroutines
		// copying them, which a background process of the command holding
		// the pipe keeps open; the agent kills such leftovers only after
		// the client reports the command done, so without a bound the two
		// would wait for each other for good.
		cmd.WaitDelay = waitDelay
	}

	// Fork keeps the forking thread alive with the child, so Pdeathsig
	// means "the client died"; the helper sets no_new_privs itself, on the
	// thread that execs.
	c, err := sandbox.Fork(cmd, false)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start %s in sandbox: %w", target, err)
	}
	return &Helper{cmd: cmd, child: c, w: w, target: target}, nil
}

// Pid is the helper's process id.
func (h *Helper) Pid() int { return h.cmd.Process.Pid }

// Start has the agent place the helper in session s's sandbox (unless the
// agent placed it while creating s: Place of the create request), then
// gives it the go-ahead with what it applies before the exec (Landlock from
// s.Landlock, seccomp from the sandbox). On failure the helper exits
// without exec'ing and Start returns once it has.
func (h *Helper) Start(s *api.Session) (*sandbox.Child, error) {
	if h.w == nil {
		return nil, errors.New("start in sandbox: the helper was already started or aborted")
	}
	// Placed by the agent during the create (api.CreateRequest.Place),
	// which it answered only with the sandbox's enforcement complete.
	placed := s.Placed() && s.PlacedPID() == h.Pid()
	if s.Placed() && !placed {
		h.Abort()
		return nil, errors.New("start in sandbox: a command was already started in this session")
	}
	msg, err := json.Marshal(goAhead{Landlock: s.Landlock, Seccomp: refusals(s)})
	if err != nil {
		h.Abort()
		return nil, fmt.Errorf("start in sandbox: %w", err)
	}
	if !placed {
		if err := s.Place(h.Pid()); err != nil {
			h.Abort() // the helper exits without exec'ing
			return nil, err
		}
	}
	w := h.w
	h.w = nil
	if _, err := w.Write(append([]byte{goByte}, msg...)); err != nil {
		w.Close()
		_ = h.cmd.Process.Kill()
		<-h.child.Done()
		return nil, fmt.Errorf("start %s in sandbox %s: %w", h.target, s.Sandbox.Name, err)
	}
	w.Close()
	return h.child, nil
}

// Abort ends a helper that was not started: its pipe closes before any
// go-ahead, so it exits without exec'ing; Abort returns once it has. Safe
// to call more than once, and after Start (then it does nothing).
func (h *Helper) Abort() {
	if h == nil || h.w == nil {
		return
	}
	h.w.Close()
	h.w = nil
	<-h.child.Done()
}
