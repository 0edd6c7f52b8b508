package run

import (
	"context"
	"errors"
	"fmt"
	"io"
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

func runRun(ctx context.Context, f *cmdutil.Factory, opts *runOptions) error {
	if f.Env.Euid != 0 {
		// sudo resets the environment: the hint names the variables the
		// tool needs that are set here, so that they reach it.
		return &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: errors.New("aigate run needs root on macOS to add ACL entries and load pf rules: run it with sudo: " +
			darwin.SudoHint(os.Environ(), opts.Args) + "; the command itself runs as the sandbox user " + darwin.DefaultUserName)}
	}
	m := darwin.DefaultMachine()
	user, err := m.ReadUserFile()
	if err != nil {
		if errors.Is(err, darwin.ErrNotSetUp) {
			err = fmt.Errorf("%w: run `sudo aigate setup` once, then run again", err)
		}
		return &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: fmt.Errorf("refusing to run %s without enforcement: %w", opts.Args[0], err)}
	}

	loaded, err := f.Load()
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	pol, warns := loaded.Policy()
	for _, w := range warns {
		f.Warnf("%s", w)
	}
	env := loaded.PolicyEnv()
	compiled, err := policy.Compile(pol, env)
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	if opts.Audit {
		compiled.Mode = policy.ModeAudit
	}
	// A fresh sandbox user has no Claude login: allowing the API host
	// without the login hosts would leave /login unable to finish.
	if added := darwin.AddLoginDomains(compiled); len(added) > 0 && !opts.Quiet {
		f.Warnf("allowing %s too: Claude Code's login needs them, and the policy allows api.anthropic.com (docs/macos.md)", strings.Join(added, ", "))
	}
	if filepath.Base(opts.Args[0]) == "claude" && !darwin.HasAuth(os.Environ()) && !opts.Quiet {
		f.Warnf("no ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN reached aigate (sudo drops them): unless you logged in once as %s, Claude Code will ask you to log in; to pass your key: %s (docs/macos.md, \"Claude Code\")",
			user.Name, darwin.SudoHint(append(os.Environ(), "ANTHROPIC_API_KEY=x"), opts.Args))
	}
	masker, err := mask.Compile(compiled.Mask)
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	lines := &lineWriter{w: f.Err, m: masker}
	if err := shareable(env.ProjectRoot, env.Home); err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: err}
	}
	// Found before anything is applied, so that a typo changes nothing.
	if _, err := exec.LookPath(opts.Args[0]); err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitNotFound, Err: fmt.Errorf("command %s: %w", opts.Args[0], err)}
	}

	var eventsOut io.Writer
	if opts.EventsFile != "" {
		u := loaded.Paths.User
		ef, err := openEventsFile(opts.EventsFile, u, u.Sudo, u.UID, u.GID)
		if err != nil {
			return &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: err}
		}
		defer ef.Close()
		eventsOut = ef
	}

	// Signals are caught from here on (runSignals): SIGTERM and SIGHUP end
	// the command through ctx (SIGTERM, then SIGKILL).
	sigs, stopSignals := runSignals()
	defer stopSignals()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lastSig atomic.Int32
	sigDone := make(chan struct{})
	defer close(sigDone)
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

	if compiled.Mode == policy.ModeAudit && !opts.Quiet {
		f.Warnf("audit mode: nothing is blocked on the network, what would be is reported; file rules are not applied")
	}
	// pf has no counters per session: the summary is the tally of the
	// events themselves.
	rep := newRunReporter(f, reportOptions{Quiet: opts.Quiet, JSON: eventsOut, Name: func(e *events.Event) { agent.Name(e, user.Name, compiled) }, Lines: lines})
	evs := make(chan events.Event)
	pumpDone := make(chan struct{})
	stopPump := make(chan struct{})
	go func() {
		defer close(pumpDone)
		rep.pump(evs, stopPump)
	}()

	var stdio *runStdio
	if masker != nil && isTerminal(f.Out) {
		// darwin.Run gives the tool aigate's own stdio, with no terminal
		// of its own: masking would turn its stdout into a pipe, and a
		// terminal interface (Claude Code's) stops working. Said, not
		// hidden.
		f.Warnf("mask_output is not applied on macOS while the output is a terminal (a pipe would take the tool's terminal away); redirect the output to mask it")
		masker = nil
	}
	if masker != nil {
		// Pipes, not a pty: darwin.Run starts the command itself with
		// os.Stdin, os.Stdout and os.Stderr, without a session of its
		// own, so a pty could not be its controlling terminal.
		stdio, err = newRunStdio(f, masker, lines, false)
		if err != nil {
			close(stopPump)
			<-pumpDone
			return &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: fmt.Errorf("refusing to run %s: %w", opts.Args[0], err)}
		}
		defer stdio.finish()
		if !opts.Quiet {
			stdio.announce(f, len(compiled.Mask))
		}
		// darwin.SandboxCommand reads these when Run starts the command;
		// aigate's own output goes through f, which keeps the originals.
		origOut, origErr := os.Stdout, os.Stderr
		os.Stdout, os.Stderr = stdio.Stdout, stdio.Stderr
		defer func() { os.Stdout, os.Stderr = origOut, origErr }()
	}

	out, err := darwin.Run(runCtx, compiled, darwin.Env{
		User:        user,
		ProjectRoot: env.ProjectRoot,
		Home:        env.Home,
		Owner:       owner(loaded.Paths.User.Name, loaded.Paths.User.Sudo),
		StateFile:   m.StateFile(),
		FS:          os.DirFS("/"),
		ExecDirs:    filepath.SplitList(os.Getenv("PATH")),
		Resolver:    net.DefaultResolver,
		PID:         os.Getpid(),
		Alive:       darwin.Alive,
		Warn:        func(s string) { f.Warnf("%s", s) },
	}, opts.Args, evs)
	// darwin.Run never closes evs: its pf log reader stops sending once
	// Run has returned (its context is done by then).
	close(stopPump)
	<-pumpDone
	if stdio != nil {
		// The tool's last output comes before the summary.
		stdio.finish()
	}
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
		return &cmdutil.StatusError{Code: code, Err: fmt.Errorf("refusing to run %s: %w", opts.Args[0], err)}
	}
	rep.finish(0, 0)
	if sig := lastSig.Load(); sig != 0 && out.ExitCode == 0 {
		// The tool exited cleanly on SIGTERM; the caller still asked for
		// an end, as a shell would report it.
		return cmdutil.SilentExit(cmdutil.ExitCode(128 + int(sig)))
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
