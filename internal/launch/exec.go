//go:build linux

package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
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
	helperEnv         = "AIGATE_SANDBOX_EXEC"     // the command's path
	helperFDEnv       = "AIGATE_SANDBOX_FD"       // the pipe's descriptor number
	helperLandlockEnv = "AIGATE_SANDBOX_LANDLOCK" // landlock.Options as JSON
	// seccompEnv asks the helper for the seccomp filter (internal/seccomp),
	// as seccomp.Refuse in JSON: set when no BPF LSM program refuses
	// what it refuses.
	seccompEnv = "AIGATE_SANDBOX_SECCOMP"
	goByte     = 'g'
)

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
	var b [1]byte
	n, _ := unix.Read(fdNum, b[:])
	unix.Close(fdNum)
	if n != 1 || b[0] != goByte {
		// The client gave up (the agent refused, or it was killed).
		return helperExitNoGo
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, helperEnv+"=") || strings.HasPrefix(kv, helperFDEnv+"=") ||
			strings.HasPrefix(kv, helperLandlockEnv+"=") || strings.HasPrefix(kv, seccompEnv+"=") {
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
	if err := enterLandlock(os.Getenv(helperLandlockEnv)); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: %v\n", err)
		return helperExitNoGo
	}
	if js := os.Getenv(seccompEnv); js != "" {
		var r seccomp.Refuse
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			fmt.Fprintf(os.Stderr, "aigate: bad %s: %v\n", seccompEnv, err)
			return helperExitNoGo
		}
		if err := seccomp.Install(r); err != nil {
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
func enterLandlock(js string) error {
	var opts landlock.Options
	if js != "" {
		if err := json.Unmarshal([]byte(js), &opts); err != nil {
			return fmt.Errorf("bad %s: %w", helperLandlockEnv, err)
		}
	}
	if landlock.ABI() > 0 {
		// Best effort: a tool that finds no ~/.cache copes as it would
		// anywhere; the run must not fail for it.
		_ = landlock.CreateMissing(opts)
	}
	rs, _ := landlock.Plan(opts, landlock.OSDirs{})
	_, err := landlock.Restrict(rs)
	if errors.Is(err, landlock.ErrUnavailable) && !opts.Required {
		return nil
	}
	if err != nil {
		return fmt.Errorf("confine the command: %w", err)
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
	if s.Placed() {
		return nil, errors.New("start in sandbox: a command was already started in this session")
	}
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
	ll, err := json.Marshal(s.Landlock)
	if err != nil {
		return nil, fmt.Errorf("start in sandbox: %w", err)
	}
	cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)],
		helperEnv+"="+target,
		helperFDEnv+"="+strconv.Itoa(3+len(cmd.ExtraFiles)),
		helperLandlockEnv+"="+string(ll))
	if r := refusals(s); r.Any() {
		js, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("start in sandbox: %w", err)
		}
		cmd.Env = append(cmd.Env, seccompEnv+"="+string(js))
	}
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
		return nil, fmt.Errorf("start %s in sandbox %s: %w", target, s.Sandbox.Name, err)
	}
	if err := s.Place(cmd.Process.Pid); err != nil {
		w.Close() // the helper exits without exec'ing
		<-c.Done()
		return nil, err
	}
	if _, err := w.Write([]byte{goByte}); err != nil {
		w.Close()
		_ = cmd.Process.Kill()
		<-c.Done()
		return nil, fmt.Errorf("start %s in sandbox %s: %w", target, s.Sandbox.Name, err)
	}
	w.Close()
	return c, nil
}
