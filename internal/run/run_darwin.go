package run

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/darwin"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/mask"
	"github.com/aigate-dev/aigate/internal/policy"
)

// runOptions are the inputs of `aigate run` on macOS.
type runOptions struct {
	Audit      bool
	Quiet      bool
	EventsFile string
	Args       []string
}

// NewCmd builds `aigate run`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]",
		Short: "Run a command as the sandbox user, behind ACL deny entries and a pf anchor",
		Long: `Run COMMAND as the hidden sandbox user ` + darwin.DefaultUserName + ` (created by sudo aigate setup)
in the project directory, with your merged policy (global ~/.aigate/config.yaml
and the project's .aigate.yaml) applied as ACL deny entries on the files it
protects and a pf anchor limiting the user's network. Everything is undone
when COMMAND exits; a run that was killed is undone by the next run or by
sudo aigate reset --force. docs/macos.md says exactly what is enforced.

Each blocked connection prints one line on stderr (macOS reports no file
denials: the kernel refuses with EACCES and tells nobody). --events FILE
appends every event as a JSON line (schema: docs/events.md). A summary
follows at exit.

sudo resets the environment: name the variables COMMAND needs with
--preserve-env (ANTHROPIC_API_KEY, or CLAUDE_CODE_OAUTH_TOKEN from
claude setup-token for a subscription; docs/macos.md). When the tool
exits, every process of the sandbox user is ended before anything is
undone; if pf stops calling the anchor during the session, the tool is
ended.

aigate never starts COMMAND unless the policy is in place.

Exit status: COMMAND's own status, or 128+N when a signal N killed it.
aigate's own failures:
  2  bad command line
  3  not root, or aigate setup has not run: COMMAND not started
  4  the policy is invalid: COMMAND not started
  5  the sandbox could not be set up: COMMAND not started
  127  COMMAND not found`,
		Example: `  sudo --preserve-env=ANTHROPIC_API_KEY aigate run -- claude
  sudo aigate run --audit --events /tmp/aigate.jsonl -- aider`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return cmdutil.UsageErrorf("put -- before the command: aigate run [flags] -- %s", strings.Join(args, " "))
			}
			opts.Args = args
			return runRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.Audit, "audit", false, "block nothing on the network and report what would have been blocked (file rules are not applied)")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print no event lines and no summary")
	fl.StringVar(&opts.EventsFile, "events", "", "append every event as a JSON line to `FILE`")
	return cmd
}

// runRun applies the policy itself (no agent runs on macOS): ACL deny
// entries on the files it protects and a pf anchor for the sandbox user,
// for as long as the command runs as that user.
//
// The steps, in order: refuse without root or setup (requireSetUp);
// settle the policy and the command (planRun); open --events; end the
// command on SIGTERM and SIGHUP (endOnSignal); report events; mask the
// output; apply the policy, run the command and undo it all (darwin.Run,
// which starts the command only once the policy is in place); return the
// command's status (runExit).
func runRun(ctx context.Context, f *cmdutil.Factory, opts *runOptions) error {
	m := darwin.DefaultMachine()
	user, err := requireSetUp(f, m, opts.Args)
	if err != nil {
		return err
	}
	p, err := planRun(f, opts, user)
	if err != nil {
		return err
	}
	u := p.loaded.Paths.User
	eventsOut, closeEvents, err := openEvents(opts.EventsFile, u, u.Sudo, u.UID, u.GID)
	if err != nil {
		return err
	}
	defer closeEvents()

	// Signals are caught from here on (runSignals): SIGTERM and SIGHUP end
	// the command through ctx (SIGTERM, then SIGKILL).
	runCtx, lastSig, stopSignals := endOnSignal(ctx)
	defer stopSignals()

	if p.compiled.Mode == policy.ModeAudit && !opts.Quiet {
		f.Warnf("audit mode: nothing is blocked on the network, what would be is reported; file rules are not applied")
	}
	// pf has no counters per session: the summary is the tally of the
	// events themselves.
	rep := newRunReporter(f, reportOptions{Quiet: opts.Quiet, JSON: eventsOut, Name: func(e *events.Event) { agent.Name(e, user.Name, p.compiled) }, Lines: p.lines})
	evs := make(chan events.Event)
	stopPump := make(chan struct{})
	pumpDone := rep.start(evs, stopPump)

	stdio, err := maskOutput(f, p.masker, p.lines)
	if err != nil {
		close(stopPump)
		<-pumpDone
		return refusing(cmdutil.ExitSandbox, opts.Args[0], err)
	}
	if stdio != nil {
		defer stdio.finish()
		if !opts.Quiet {
			stdio.announce(f, len(p.compiled.Mask))
		}
		defer commandStdio(stdio)()
	}

	out, err := darwin.Run(runCtx, p.compiled, p.sessionEnv(f, m, user), opts.Args, evs)
	// darwin.Run never closes evs: its pf log reader stops sending once
	// Run has returned (its context is done by then).
	close(stopPump)
	<-pumpDone
	if stdio != nil {
		// The tool's last output comes before the summary.
		stdio.finish()
	}
	return runExit(f, rep, out, err, lastSig, opts.Args[0])
}

// requireSetUp refuses to run without what enforcement needs on macOS:
// root (for ACLs and pf) and the sandbox user that sudo aigate setup
// created, which it returns.
func requireSetUp(f *cmdutil.Factory, m darwin.Machine, args []string) (darwin.SandboxUser, error) {
	if f.Env.Euid != 0 {
		// sudo resets the environment: the hint names the variables the
		// tool needs that are set here, so that they reach it.
		return darwin.SandboxUser{}, &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: errors.New("aigate run needs root on macOS to add ACL entries and load pf rules: run it with sudo: " +
			darwin.SudoHint(os.Environ(), args) + "; the command itself runs as the sandbox user " + darwin.DefaultUserName)}
	}
	user, err := m.ReadUserFile()
	if err != nil {
		if errors.Is(err, darwin.ErrNotSetUp) {
			err = fmt.Errorf("%w: run `sudo aigate setup` once, then run again", err)
		}
		return darwin.SandboxUser{}, &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: fmt.Errorf("refusing to run %s without enforcement: %w", args[0], err)}
	}
	return user, nil
}

// runPlan is what run settles on macOS before it changes anything: the
// policy, compiled, and that the command exists.
type runPlan struct {
	loaded   *config.Loaded
	env      policy.Env
	compiled *policy.Compiled
	masker   *mask.Matcher // nil: the output is not masked
	lines    *lineWriter   // aigate's own lines while the command runs
}

// planRun loads and compiles the policy (its warnings said here: no agent
// says them on macOS), adds what Claude Code's login needs, and checks
// that the project may be shared and the command exists.
func planRun(f *cmdutil.Factory, opts *runOptions, user darwin.SandboxUser) (*runPlan, error) {
	loaded, err := loadConfig(f)
	if err != nil {
		return nil, err
	}
	pol, warns := loaded.Policy()
	for _, w := range warns {
		f.Warnf("%s", w)
	}
	p := &runPlan{loaded: loaded, env: loaded.PolicyEnv()}
	if p.compiled, err = compilePolicy(pol, p.env); err != nil {
		return nil, err
	}
	if opts.Audit {
		p.compiled.Mode = policy.ModeAudit
	}
	// A fresh sandbox user has no Claude login: allowing the API host
	// without the login hosts would leave /login unable to finish.
	if added := darwin.AddLoginDomains(p.compiled); len(added) > 0 && !opts.Quiet {
		f.Warnf("allowing %s too: Claude Code's login needs them, and the policy allows api.anthropic.com (docs/macos.md)", strings.Join(added, ", "))
	}
	if filepath.Base(opts.Args[0]) == "claude" && !darwin.HasAuth(os.Environ()) && !opts.Quiet {
		f.Warnf("no ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN reached aigate (sudo drops them): unless you logged in once as %s, Claude Code will ask you to log in; to pass your key: %s (docs/macos.md, \"Claude Code\")",
			user.Name, darwin.SudoHint(append(os.Environ(), "ANTHROPIC_API_KEY=x"), opts.Args))
	}
	if p.masker, p.lines, err = compileMask(f, p.compiled); err != nil {
		return nil, err
	}
	if err := shareable(p.env.ProjectRoot, p.env.Home); err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: err}
	}
	// Found before anything is applied, so that a typo changes nothing.
	if _, err := exec.LookPath(opts.Args[0]); err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitNotFound, Err: fmt.Errorf("command %s: %w", opts.Args[0], err)}
	}
	return p, nil
}

// sessionEnv is what darwin.Run needs to apply the policy for the sandbox
// user, and to undo it (now, or after a crash, from m's state file).
func (p *runPlan) sessionEnv(f *cmdutil.Factory, m darwin.Machine, user darwin.SandboxUser) darwin.Env {
	u := p.loaded.Paths.User
	return darwin.Env{
		User:        user,
		ProjectRoot: p.env.ProjectRoot,
		Home:        p.env.Home,
		Owner:       owner(u.Name, u.Sudo),
		StateFile:   m.StateFile(),
		FS:          os.DirFS("/"),
		ExecDirs:    filepath.SplitList(os.Getenv("PATH")),
		Resolver:    net.DefaultResolver,
		PID:         os.Getpid(),
		Alive:       darwin.Alive,
		Warn:        func(s string) { f.Warnf("%s", s) },
	}
}

// endOnSignal catches signals for the length of the run (runSignals):
// SIGTERM and SIGHUP cancel runCtx, which ends the command; last is the
// last of them (0: none). stop ends the catching.
func endOnSignal(ctx context.Context) (runCtx context.Context, last func() syscall.Signal, stop func()) {
	sigs, stopSignals := runSignals()
	runCtx, cancel := context.WithCancel(ctx)
	var lastSig atomic.Int32
	sigDone := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGTERM || s == syscall.SIGHUP {
					lastSig.Store(int32(s.(syscall.Signal)))
					cancel()
				}
			case <-sigDone:
				return
			}
		}
	}()
	last = func() syscall.Signal { return syscall.Signal(lastSig.Load()) }
	stop = func() {
		close(sigDone)
		cancel()
		stopSignals()
	}
	return runCtx, last, stop
}

// maskOutput returns the masking pipes the command's output goes through
// when the policy masks output (nil when it does not, or cannot).
func maskOutput(f *cmdutil.Factory, masker *mask.Matcher, lines *lineWriter) (*runStdio, error) {
	if masker != nil && isTerminal(f.Out) {
		// darwin.Run gives the tool aigate's own stdio, with no terminal
		// of its own: masking would turn its stdout into a pipe, and a
		// terminal interface (Claude Code's) stops working. Said, not
		// hidden.
		f.Warnf("mask_output is not applied on macOS while the output is a terminal (a pipe would take the tool's terminal away); redirect the output to mask it")
		return nil, nil
	}
	if masker == nil {
		return nil, nil
	}
	// Pipes, not a pty: darwin.Run starts the command itself with
	// os.Stdin, os.Stdout and os.Stderr, without a session of its
	// own, so a pty could not be its controlling terminal.
	return newRunStdio(f, masker, lines, stdioOptions{})
}

// commandStdio makes stdio's pipes os.Stdout and os.Stderr until restore
// puts the originals back: darwin.SandboxCommand reads these when Run
// starts the command; aigate's own output goes through f, which keeps
// the originals.
func commandStdio(stdio *runStdio) (restore func()) {
	origOut, origErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = stdio.Stdout, stdio.Stderr
	return func() { os.Stdout, os.Stderr = origOut, origErr }
}

// runExit is run's status once darwin.Run has returned: its failure under
// the exit code that says why, else the command's status; lastSig is the
// SIGTERM or SIGHUP that asked for the end (0: none), read last.
func runExit(f *cmdutil.Factory, rep *runReporter, out darwin.Outcome, err error, lastSig func() syscall.Signal, command string) error {
	if out.CleanupErr != nil {
		f.Warnf("%v", out.CleanupErr)
	}
	if err != nil {
		code := cmdutil.ExitSandbox
		switch {
		case errors.Is(err, darwin.ErrNotSetUp):
			code = cmdutil.ExitNoEnforcement
		case errors.Is(err, exec.ErrNotFound):
			code = cmdutil.ExitNotFound
		}
		return refusing(code, command, err)
	}
	rep.finish(0, 0, 0)
	if sig := lastSig(); sig != 0 && out.ExitCode == 0 {
		// The tool exited cleanly on SIGTERM; the caller still asked for
		// an end, as a shell would report it.
		return signalExit(sig)
	}
	return cmdutil.SilentExit(cmdutil.ExitCode(out.ExitCode))
}

// owner is the account that gets an inheritable entry on the project, so
// that what the tool creates stays usable: the person who ran sudo. Root
// itself needs none.
func owner(name string, sudo bool) string {
	if !sudo {
		return ""
	}
	return name
}
