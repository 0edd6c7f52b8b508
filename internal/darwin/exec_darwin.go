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
	// A cancelled run asks the tool to stop before killing it, so that it
	// can save its work.
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = KillDelay
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

// Outcome is how a session that ran the tool ended.
type Outcome struct {
	// ExitCode is the tool's status, or 128+N when signal N killed it, as
	// shells report it.
	ExitCode int
	// CleanupErr is set when undoing the session's changes failed after
	// the tool ran; what is left stays in the state file for
	// `sudo aigate reset`.
	CleanupErr error
}

// Run applies c, runs argv as the sandbox user, and undoes everything when
// the tool exits. Cancelling ctx (aigate got SIGTERM or SIGHUP) sends the
// tool SIGTERM, then SIGKILL after KillDelay. Network events go to evs while
// the tool runs (evs may be nil; Run never closes it). An error means the
// tool did not run: ErrNotSetUp when pf would not evaluate the anchor,
// ErrBusy when another session runs, else the step that failed (whatever
// it had changed is undone).
func Run(ctx context.Context, c *policy.Compiled, env Env, argv []string, evs chan<- events.Event) (res Outcome, err error) {
	if len(argv) == 0 {
		return Outcome{}, errors.New("run: no command given")
	}
	r := ExecRunner{}
	if env.Alive == nil {
		env.Alive = Alive
	}
	warn := env.Warn
	if warn == nil {
		warn = func(string) {}
	}
	if needsPF(c.Net) {
		// Rules in an anchor nothing calls are never evaluated: the
		// tool's network would be open while the run claims otherwise.
		ac := AnchorRulesCommand()
		out, err := ac.run(ctx, r)
		if err != nil {
			return Outcome{}, runError("read the pf ruleset", ac, out, err)
		}
		if chk := CheckAnchorReferenced(string(out)); !chk.OK {
			return Outcome{}, fmt.Errorf("%w: %s; fix: %s", ErrNotSetUp, chk.Detail, chk.Fix)
		}
	}
	applied, err := Apply(ctx, r, c, env)
	if err != nil {
		return Outcome{}, err
	}
	// res is a named result so that the undo's failure reaches the caller.
	defer func() {
		if rerr := Revert(context.WithoutCancel(ctx), r, env.StateFile); rerr != nil {
			res.CleanupErr = fmt.Errorf("remove the sandbox rules: %w (run `sudo aigate reset --force`)", rerr)
		}
	}()
	for _, w := range applied.Warnings {
		warn(w)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if f := applied.Refresher(); f != nil {
		go f.Run(runCtx, DefaultRefreshInterval, func(err error) { warn("refresh allowed domains: " + err.Error()) })
	}
	if evs != nil && needsPF(c.Net) {
		if log, err := startPFLog(runCtx, r, c, env.User, evs); err == nil {
			// Cancel before waiting: tcpdump only ends when killed.
			defer func() { stop(); log.Wait() }()
		} else {
			warn("no network events: " + err.Error())
		}
	}
	environ, _ := c.Env.Filter(os.Environ()) // deny_env
	cmd := SandboxCommand(ctx, env.User, env.ProjectRoot, argv, environ)
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.ExitCode = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.ExitCode = 128 + int(ws.Signal())
		}
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("run %s as %s: %w", argv[0], env.User.Name, err)
	}
	return res, nil
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
