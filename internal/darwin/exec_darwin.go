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
// the equivalent of `sudo -u _aigate` without depending on sudoers. HOME
// is the sandbox user's own home: the invoking user's home is exactly what
// the deny rules protect.
func SandboxCommand(ctx context.Context, u SandboxUser, projectRoot string, argv []string, env []string) *exec.Cmd {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Dir = projectRoot
	c.Env = append(filterEnv(env, "HOME", "USER", "LOGNAME", "SUDO_USER", "SUDO_UID", "SUDO_GID", "SUDO_COMMAND"),
		"HOME="+u.Home, "USER="+u.Name, "LOGNAME="+u.Name)
	c.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{u.GID}},
	}
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	return c
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
next:
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		for _, d := range drop {
			if k == d {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// Run applies c, runs argv as the sandbox user, and undoes everything when
// the tool exits or ctx is cancelled (Ctrl-C). Network events go to evs
// while the tool runs (evs may be nil).
func Run(ctx context.Context, c *policy.Compiled, env Env, argv []string, evs chan<- events.Event) (exitCode int, warnings []string, err error) {
	if len(argv) == 0 {
		return 0, nil, errors.New("run: no command given")
	}
	r := ExecRunner{}
	if env.Alive == nil {
		env.Alive = Alive
	}
	applied, err := Apply(ctx, r, c, env)
	if err != nil {
		return 0, nil, err
	}
	defer func() {
		if rerr := Revert(context.WithoutCancel(ctx), r, env.StateFile); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove sandbox rules: %w (run `sudo aigate reset`)", rerr))
		}
	}()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if f := applied.Refresher(); f != nil {
		go f.Run(runCtx, DefaultRefreshInterval, nil)
	}
	if evs != nil {
		if log, err := startPFLog(runCtx, c, env.User, evs); err == nil {
			// Cancel before waiting: tcpdump only ends when killed.
			defer func() { stop(); log.Wait() }()
		} else {
			applied.Warnings = append(applied.Warnings, "no network events: "+err.Error())
		}
	}
	cmd := SandboxCommand(runCtx, env.User, env.ProjectRoot, argv, os.Environ())
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), applied.Warnings, nil
	}
	if err != nil {
		return 0, applied.Warnings, fmt.Errorf("run %s as %s: %w", argv[0], env.User.Name, err)
	}
	return 0, applied.Warnings, nil
}

func startPFLog(ctx context.Context, c *policy.Compiled, u SandboxUser, out chan<- events.Event) (*exec.Cmd, error) {
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
