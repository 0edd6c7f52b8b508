//go:build darwin

package darwin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// ExecRunner runs commands with os/exec.
type ExecRunner struct{}

// Run runs name with args and stdin and returns the combined output; a
// failure carries the command's own message.
func (ExecRunner) Run(ctx context.Context, name string, args []string, stdin []byte) ([]byte, error) {
	c := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	out, err := c.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Alive reports whether a process with pid exists (signal 0 probes it).
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// SandboxCommand returns the command that runs argv as the sandbox user in
// the project directory. aigate runs as root (it needed root for pf), so the
// child drops to the user's ids with setgid/setgroups/setuid before exec,
// the equivalent of `sudo -u _aigate` without depending on sudoers. env is
// the tool's whole environment (ToolEnv): HOME is the sandbox user's own,
// since the invoking user's home is exactly what the deny rules protect.
func SandboxCommand(ctx context.Context, u SandboxUser, projectRoot string, argv []string, env []string) *exec.Cmd {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Dir = projectRoot
	c.Env = env
	c.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{u.GID}},
	}
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	// A cancelled run asks the tool to stop before killing it, so that it
	// can save its work.
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = KillDelay
	return c
}

// Run applies c, runs argv as the sandbox user, and undoes everything when
// the tool exits. Cancelling ctx (aigate got SIGTERM or SIGHUP) sends the
// tool SIGTERM, then SIGKILL after KillDelay. Network events go to evs while
// the tool runs (evs may be nil; Run never closes it). An error means the
// tool did not run: ErrNotSetUp when pf would not evaluate the anchor,
// ErrBusy when another session runs, else the step that failed (whatever
// it had changed is undone).
func Run(ctx context.Context, c *policy.Compiled, env Env, argv []string, evs chan<- events.Event) (Outcome, error) {
	if len(argv) == 0 {
		return Outcome{}, errNoCommand
	}
	r := ExecRunner{}
	if env.Alive == nil {
		env.Alive = Alive
	}
	environ, _ := c.Env.Filter(os.Environ()) // deny_env
	s := session{r: r, environ: environ, anchorEvery: AnchorCheckInterval}
	s.start = func(ctx context.Context, toolEnv []string) (func() (int, error), error) {
		cmd := SandboxCommand(ctx, env.User, env.ProjectRoot, argv, toolEnv)
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("run %s as %s: %w", argv[0], env.User.Name, err)
		}
		return func() (int, error) {
			err := cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			}
			if err != nil {
				return 0, fmt.Errorf("run %s as %s: %w", argv[0], env.User.Name, err)
			}
			return 0, nil
		}, nil
	}
	if evs != nil {
		s.startLog = func(ctx context.Context) (func(), error) {
			logCtx, cancel := context.WithCancel(ctx)
			log, err := startPFLog(logCtx, r, c, env.User, evs)
			if err != nil {
				cancel()
				return nil, err
			}
			// Cancel before waiting: tcpdump only ends when killed.
			return func() { cancel(); log.Wait() }, nil
		}
	}
	return s.run(ctx, c, env)
}

// KillDelay is how long a tool has to exit after SIGTERM before it is
// killed.
const KillDelay = 10 * time.Second

func startPFLog(ctx context.Context, r Runner, c *policy.Compiled, u SandboxUser, out chan<- events.Event) (*exec.Cmd, error) {
	// pflog0 does not survive a reboot; an error because it exists is the
	// usual case.
	_, _ = cmd("ifconfig", PFLogIf, "create").run(ctx, r)
	pc := PFLogCommand()
	cmd := exec.CommandContext(ctx, pc.Name, pc.Args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("pflog reader: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", pc, err)
	}
	go ReadPFLog(ctx, stdout, c, u, out)
	return cmd, nil
}
