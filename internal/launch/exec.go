//go:build linux

package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/exechelper"
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

// waitDelay bounds how long Child.Wait waits for the command's output
// pipes after it exited.
const waitDelay = time.Second

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
		exechelper.Env+"="+target,
		exechelper.FDEnv+"="+strconv.Itoa(3+len(cmd.ExtraFiles)))
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
	msg, err := json.Marshal(exechelper.GoAhead{Landlock: s.Landlock, Seccomp: refusals(s)})
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
	if _, err := w.Write(append([]byte{exechelper.GoByte}, msg...)); err != nil {
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
