//go:build linux

package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/mask"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// runOptions are the inputs of `aigate run`.
type runOptions struct {
	Audit bool
	Quiet bool
	// RawTerminal gives the command the terminal itself, unfiltered.
	RawTerminal bool
	EventsFile  string
	User        string
	Backend     string
	Args        []string
	// Socket is the agent's; MetricsAddr is where an agent that run
	// embeds serves /metrics ("" for none).
	Socket      string
	MetricsAddr string
	// TrustDir is where an agent that run embeds keeps the accepted
	// global policies and the trust records (agent.Config.TrustDir).
	TrustDir string

	// openBackend and parent are replaced by tests; they serve the agent
	// that run embeds.
	openBackend func(policy.BackendChoice, backend.Options) (enforce.Backend, error)
	parent      string // cgroup holding the sandboxes, below the v2 mount

	// releaseGC gives the garbage collector back (gchold.go); nil: not
	// held.
	releaseGC func()
}

// NewCmd builds `aigate run`.
func NewCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]",
		Short: "Run a command in a kernel-enforced sandbox",
		Long: `Run COMMAND in a new sandbox whose file opens, program executions and
network connections the kernel checks against your merged policy (global
~/.aigate/config.yaml and the project's .aigate.yaml).

Run it in your project: the project is the directory of the nearest
.aigate.yaml, or the working directory. / , a directory above your home
and /proc or /sys are refused (exit 5); in your home itself the home stays
read-only but for the tools' state.

The aigate agent creates the sandbox: run asks it over its socket, so no
sudo is needed once it runs (sudo aigate setup installs it). Without an
agent, run as root starts one inside itself for as long as it runs, on the
same socket, so aigate watch and the metrics work meanwhile.

On a terminal the command runs on a pseudo-terminal of aigate's, whose
output reaches yours filtered: escape sequences that would set your
clipboard (OSC 52) or make your terminal type text back are dropped, and
run says so when the command has ended; interactive tools (raw mode,
resizes, Ctrl-C, Ctrl-Z) work (--raw-terminal gives it your terminal
unfiltered; docs/run.md, "The terminal filter"). When the policy has mask_output expressions, its
output is masked too; on pipes through masking pipes (docs/run.md,
"Masking secrets in output"). Started with sudo, it runs
as the user who ran sudo, with HOME, USER and LOGNAME set to theirs. It can
never gain privileges (no_new_privs: setuid programs do not elevate).

Each blocked operation prints one line on stderr; identical ones are folded
and a flood is rationed. --events FILE appends every event as a JSON line
(schema: docs/events.md). A summary follows at exit.

aigate never starts COMMAND unless enforcement is in place. When COMMAND
exits, whatever it left running in the sandbox is killed.

Exit status: COMMAND's own status, or 128+N when a signal N killed it.
aigate's own failures:
  2  bad command line
  3  no usable enforcement (no agent and not root, kernel not ready): COMMAND not started
  4  the policy is invalid, or loosened (global config, project file) without being
     accepted or trusted from outside a sandbox: COMMAND not started
  5  the sandbox could not be set up: COMMAND not started
  126  COMMAND found but not executable, or its exec was denied (deny_exec)
  127  COMMAND not found`,
		Example: `  aigate run -- claude
  aigate run --audit --events /tmp/aigate.jsonl -- aider
  sudo aigate run --backend fanotify -- cat .env`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmdutil.UsageErrorf("run needs the command to sandbox: aigate run -- COMMAND [ARG...], e.g. aigate run -- claude")
			}
			if cmd.ArgsLenAtDash() != 0 {
				return cmdutil.UsageErrorf("put -- before the command: aigate run [flags] -- %s", strings.Join(args, " "))
			}
			opts.Args = args
			return runRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.Audit, "audit", false, "allow everything, report what would have been blocked")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print no event lines and no summary")
	fl.BoolVar(&opts.RawTerminal, "raw-terminal", false, "give COMMAND the terminal itself, with no pseudo-terminal between: nothing filters what it writes there (clipboard writes, reports)")
	fl.StringVar(&opts.EventsFile, "events", "", "append every event as a JSON line to `FILE`")
	fl.StringVar(&opts.User, "user", "", "run COMMAND as `USER` (root only; default: the user who ran sudo)")
	fl.StringVar(&opts.Backend, "backend", "", "enforcement backend: auto, lsm or fanotify (default: the config's backend, else auto)")
	fl.StringVar(&opts.Socket, "socket", api.SocketPath(), "the agent's socket `PATH` ($"+api.SocketEnv+" changes the default)")
	fl.StringVar(&opts.MetricsAddr, "metrics-addr", cmdutil.DefaultMetricsAddr, "where an agent that run starts itself serves metrics (\"\" for none)")
	fl.StringVar(&opts.TrustDir, "trust-dir", agent.DefaultTrustDir, "where an agent that run starts itself keeps the global policy you last accepted and the projects you trusted, in the root-owned `DIR` the service agent uses (\"\" keeps none: a loosened ~/.aigate/config.yaml is not noticed, and ~/.aigate/trusted.yaml, your own file, decides project trust)")
	return cmd
}

// identity is who the command runs as.
type identity struct {
	name   string
	home   string
	cred   *syscall.Credential // nil: as aigate itself
	uid    int
	gid    int
	chownE bool // files aigate creates for the user are handed to uid/gid
}

// runRun creates the sandbox through the agent, the one code path for
// every run: an agent that runs already (as a service), or, when there is
// none and run is root, one that run starts inside itself.
//
// The steps, in order: refuse inside a sandbox; settle the policy, its
// trust and the command (planRun); open --events and catch signals;
// start the command's exec helper, which waits (prepareEarly); create the
// sandbox (openSandbox); start the command in it once its
// enforcement is complete (start); report its events; wait for it and
// return its status (wait). Nothing runs before the sandbox enforces, and
// every path after openSandbox ends the sandbox (end).
func runRun(ctx context.Context, f *cmdutil.Factory, opts *runOptions) error {
	if name, ok := cmdutil.InsideSandbox(); ok {
		return cmdutil.InsideError("aigate run", name)
	}
	// No collection before the command starts (gchold.go).
	opts.releaseGC = holdGC()
	defer opts.releaseGC()
	p, err := planRun(f, opts)
	if err != nil {
		return err
	}
	var muxDone func()
	p.env, muxDone = muxTmpEnv(p.env, p.id.uid, p.loaded.Paths.User)
	defer muxDone()
	// The user's sockets are looked for, and the Landlock domain planned,
	// while the rest is set up.
	sockets := startSocketRunRules(p)
	covers := startLandlockCovers(p)
	eventsOut, closeEvents, err := p.openEvents(opts.EventsFile)
	if err != nil {
		return err
	}
	defer closeEvents()

	// Signals are caught from here on (runSignals); SIGTERM and SIGHUP
	// are passed on to the command.
	sigs, stopSignals := runSignals()
	defer stopSignals()

	// The command's exec helper starts now, while the agent builds the
	// sandbox; it waits for the go-ahead that start gives once the
	// sandbox's enforcement is complete (runearly.go).
	early, err := prepareEarly(f, opts, p)
	if err != nil {
		return err
	}
	s, err := openSandbox(ctx, f, opts, p, eventsOut, sigs, early, sockets, covers)
	if err != nil {
		early.abort()
		return err
	}

	// A signal that arrived during setup ends the run before the command
	// starts.
	select {
	case sig := <-sigs:
		s.end(false)
		return signalExit(sig.(syscall.Signal))
	default:
	}

	// Whatever happens from here, the terminal gets its mode back
	// (finish is idempotent; a panic runs it too).
	defer s.restoreTerminal()
	child, err := s.start()
	opts.releaseGC()
	if err != nil {
		return err
	}
	s.reportEvents()
	f.Log.Debug("started", zap.Int("pid", child.Pid()), zap.String("sandbox", s.sess.Sandbox.Name))
	return s.wait(child)
}

// runPlan is what run settles before it asks anyone for anything: whose
// policy, compiled as the agent will compile it, and which command. A
// mistake in any of it stops the run with nothing set up.
type runPlan struct {
	loaded   *config.Loaded
	id       *identity
	pol      *policy.Policy
	compiled *policy.Compiled
	masker   *mask.Matcher // nil: the output is not masked
	lines    *lineWriter   // aigate's own lines while the command runs
	mode     policy.Mode
	choice   policy.BackendChoice
	path     string   // the command, found in env's PATH
	env      []string // the command's environment
	// claudeDir is Claude Code's state directory moved by
	// $CLAUDE_CONFIG_DIR (claudeConfigDir); "" for ~/.claude alone.
	claudeDir string
	// claudeSecure is the directory $CLAUDE_SECURESTORAGE_CONFIG_DIR
	// moves Claude Code's login to (claudeSecureDir); "" when it stays in
	// claudeDir or ~/.claude.
	claudeSecure string
	// userMemory and userAgentMemory are claudestate.MemoryOverrideEnv
	// and RemoteMemoryEnv in the user's environment, which env replaces
	// with the sandbox's own.
	userMemory, userAgentMemory string
}

// planRun settles the run: the backend asked for, the policy of the user
// the command runs as, its trust, compiled, and the command itself.
func planRun(f *cmdutil.Factory, opts *runOptions) (*runPlan, error) {
	choice, err := backendFlag(opts.Backend)
	if err != nil {
		return nil, err
	}

	// Policy. The agent compiles it again from the same bytes; compiling
	// here too stops a broken file before anything is asked of anyone.
	loaded, id, err := loadForUser(f, opts.User)
	if err != nil {
		return nil, err
	}
	// Before anything reads or asks about the project: / or /proc as the
	// project would have the agent walk the machine and fail half-way
	// (the agent refuses them too).
	if err := projectRootOK(loaded.Paths, id.home); err != nil {
		return nil, refusing(cmdutil.ExitSandbox, opts.Args[0], err)
	}
	if holdsHome(loaded.Paths.WorkDir, id.home) {
		f.Warnf("the project directory is your home %s: it stays read-only in the sandbox but for the usual tool state, $TMPDIR and your writable list; cd into a project for the tool to write there", id.home)
	}
	if err := settleTrust(f, opts, loaded); err != nil {
		return nil, err
	}
	p := &runPlan{loaded: loaded, id: id}
	p.pol, _ = loaded.Policy() // warnings come back from the agent, once
	env := loaded.PolicyEnv()
	// "~/" means the home of whoever runs the tool: that is whose secrets
	// it can reach.
	env.Home = id.home
	if p.compiled, err = compilePolicy(p.pol, env); err != nil {
		return nil, err
	}
	// aigate's own lines are masked too while masking is on.
	if p.masker, p.lines, err = compileMask(f, p.compiled); err != nil {
		return nil, err
	}
	if opts.Audit {
		p.mode = policy.ModeAudit
	}
	p.choice = choice
	if p.choice == "" {
		p.choice = p.compiled.Backend
	}

	// The command, resolved with the PATH it will run with.
	if p.path, p.env, err = resolveCommand(f, p.compiled, id, opts.Args[0]); err != nil {
		return nil, err
	}
	// go, npm and pip get caches of the sandboxes' own (the policy makes
	// the user's deny_write); their config files are read as the user.
	readAsUser := func(path string) ([]byte, error) {
		return config.AsUser(loaded.Paths.User, func() ([]byte, error) { return os.ReadFile(path) })
	}
	var warns []string
	p.env, warns = cacheEnv(p.pol, p.env, id.home, loaded.Paths.ProjectRoot, readAsUser)
	for _, w := range warns {
		f.Warnf("%s", w)
	}
	// Claude Code's state moved by $CLAUDE_CONFIG_DIR gets every
	// protection of ~/.claude, and its login moved by
	// $CLAUDE_SECURESTORAGE_CONFIG_DIR that of ~/.claude's, or the run
	// does not start: a claude outside would run what the sandbox wrote
	// there, or send the user's prompts and code under another account.
	if os.Getenv(claudestate.ConfigDirEnv) != "" || os.Getenv(claudestate.SecureStorageEnv) != "" {
		if p.claudeDir, p.claudeSecure, err = claudeStateDirs(p.pol, id.home, loaded.Paths, os.Getenv); err != nil {
			return nil, refusing(cmdutil.ExitPolicy, opts.Args[0], err)
		}
	}
	// Claude Code inside keeps its auto memory and its subagents' memory
	// in the sandboxes' own directories: the real ones, which
	// claudeRunRules and the defaults keep read-only, are loaded by every
	// later claude outside.
	p.userMemory = envValue(p.env, claudestate.MemoryOverrideEnv)
	p.userAgentMemory = envValue(p.env, claudestate.RemoteMemoryEnv)
	var merr error
	if p.env, merr = claudeMemoryEnv(p.env, id.home, p.claudeDir, id.uid, loaded.Paths); merr != nil {
		f.Warnf("Claude Code's auto memory for the sandbox: %v (claude inside may fail to save notes this run)", merr)
	}
	if p.env, merr = claudeAgentMemoryEnv(p.env, id.home, p.claudeDir, id.uid, loaded.Paths.User); merr != nil {
		f.Warnf("Claude Code's subagent memory for the sandbox: %v (subagents inside may fail to save notes this run)", merr)
	}
	return p, nil
}

// openEvents opens --events as the user run acts for (openEvents); a
// file it creates belongs to the identity the command runs as, when that
// is not the invoker already.
func (p *runPlan) openEvents(path string) (io.Writer, func(), error) {
	inv := p.loaded.Paths.User
	return openEvents(path, inv, p.id.chownE && p.id.uid != inv.UID, p.id.uid, p.id.gid)
}

// backendFlag checks --backend ("" when not given: the policy decides).
func backendFlag(flag string) (policy.BackendChoice, error) {
	choice := policy.BackendChoice(flag)
	switch choice {
	case "", policy.BackendAuto, policy.BackendLSM, policy.BackendFanotify:
		return choice, nil
	}
	return "", cmdutil.UsageErrorf("--backend %q: want auto, lsm or fanotify", flag)
}

// loadForUser loads the policy of the user the command runs as and says
// who that is (runIdentity). Only root may run a command as another user.
func loadForUser(f *cmdutil.Factory, flagUser string) (*config.Loaded, *identity, error) {
	loaded, err := loadConfig(f)
	if err != nil {
		return nil, nil, err
	}
	if flagUser != "" && f.Env.Euid == 0 {
		// The command runs as --user's user: so does their policy, read
		// as that user exactly as under sudo (issue 13: root's applied).
		if loaded, err = loadAsUser(f, flagUser, loaded); err != nil {
			return nil, nil, err
		}
	}
	u := loaded.Paths.User
	id, err := runIdentity(flagUser, u.Name, u.Home, u.Sudo, u.UID, u.GID)
	if err != nil {
		return nil, nil, err
	}
	if f.Env.Euid != 0 {
		if id.uid != u.UID {
			return nil, nil, cmdutil.UsageErrorf("--user %s: only root can run a command as another user", flagUser)
		}
		id.cred, id.chownE = nil, false // setgroups needs root; nothing to change anyway
	}
	return loaded, id, nil
}

// resolveCommand finds the command in the environment it will run with
// (the identity's HOME, USER and LOGNAME, without what deny_env removes),
// so that a typo stops the run before the sandbox exists.
func resolveCommand(f *cmdutil.Factory, compiled *policy.Compiled, id *identity, name string) (path string, env []string, err error) {
	env, removed := compiled.Env.Filter(commandEnv(os.Environ(), id))
	if len(removed) > 0 {
		f.Log.Debug("deny_env", zap.Strings("removed", removed))
	}
	path, err = lookPath(name, env)
	if err != nil {
		return "", nil, &cmdutil.StatusError{Code: cmdutil.ExitNotFound, Err: err}
	}
	return path, env, nil
}

// sandboxRun is one sandbox from its creation to its end: the agent's
// session, the agent run embeds (if any), and what reports the sandbox's
// events and routes the command's output meanwhile.
type sandboxRun struct {
	f     *cmdutil.Factory
	opts  *runOptions
	p     *runPlan
	sess  *api.Session
	emb   *embeddedAgent // nil: the agent was running already
	sigs  <-chan os.Signal
	guard *policyGuard
	rep   *runReporter
	// covers are the trees the agent was told the domain covers
	// (api.CreateRequest.LandlockCovers).
	covers []string

	pumpDone <-chan struct{} // set once the command started
	early    *earlyHelper    // nil: the helper starts in start
	stdio    *runStdio       // set when the policy masks output
	join     *lineJoiner     // set when event lines join the command's stderr
	kept     *deferredLines  // set when they wait for the command's end
}

// openSandbox asks the agent for the sandbox (createSandbox: one that run
// starts in itself when none runs) and refuses a sandbox on another
// backend than the one asked for. Once it returns a sandboxRun, end must
// run on every path.
//
// sockets gives the rules for the user's sockets (startSocketRunRules),
// covers the caches the Landlock domain covers (startLandlockCovers).
func openSandbox(ctx context.Context, f *cmdutil.Factory, opts *runOptions, p *runPlan, eventsOut io.Writer, sigs <-chan os.Signal, early *earlyHelper,
	sockets func() ([]api.RunRule, []string), covers func() ([]string, map[string]landlock.Ruleset)) (*sandboxRun, error) {
	req, err := createRequest(p.loaded, p.id, p.mode, opts.Args)
	if err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	// Asked before the backend is known: only fanotify reads it, and
	// checkConfinement makes the helper hold the domain to it there.
	// Before makeToolDirs: the plan lists the directories it may create.
	// With the domain the command will enter on either backend (start
	// makes it for the one the answer names), so that the agent can
	// report its refusals from the calls that failed.
	req.LandlockCovers, req.Landlock = covers()
	if f.Env.Euid == 0 && p.id.uid != 0 {
		// Root acts for the user who ran sudo (or --user): the sandbox,
		// its events and `aigate watch` are theirs.
		owner := uint32(p.id.uid)
		req.Owner = &owner
	}
	guard := guardPolicyDir(p.loaded.Paths.Dir, p.loaded.Paths.User)
	// The agent records ~/.claude.json before the command starts and puts
	// back, with an event, what the sandbox changed in it that a claude
	// outside would run (agent/claudejson.go); a journal makes that
	// survive a kill -9 of this process.
	req.ClaudeJSON = &api.ClaudeJSONGuard{Keep: []string{p.loaded.Paths.WorkDir, p.loaded.Paths.ProjectRoot}, ConfigDir: p.claudeDir,
		DataHome: xdgDataHome(p.env)}
	makeToolDirs(p.id.home, p.claudeDir, p.id.uid, p.loaded.Paths.User)
	makeRuntimeToolDirs(p.id.uid, p.loaded.Paths.User)
	claude, notes := claudeRunRules(p)
	for _, n := range notes {
		f.Log.Debug("claude settings: not protected", zap.String("what", n))
	}
	git, notes, gitDirs := gitRunRules(p)
	for _, n := range notes {
		f.Log.Debug("git directories: not protected", zap.String("what", n))
	}
	socks, notes := sockets()
	for _, n := range notes {
		f.Log.Debug("sockets: not kept in place", zap.String("what", n))
	}
	req.DenyWrite = append(append(claude, git...), socks...)
	terms, notes := terminalRunRules(f, opts, p.id.uid)
	for _, n := range notes {
		f.Log.Debug("terminals: not kept out", zap.String("what", n))
	}
	req.DenyRead = terms
	for _, line := range []string{describeClaudeDir(p.claudeDir, p.id.home), describeRunRules(claude), describeGitRules(git)} {
		if line != "" && !opts.Quiet {
			fmt.Fprintf(f.Err, "aigate: %s\n", line)
		}
	}
	units, notes := userUnitRules(p)
	for _, n := range notes {
		f.Log.Debug("user units: not protected", zap.String("what", n))
	}
	secrets, notes := runtimeSecretRules(p)
	for _, n := range notes {
		f.Log.Debug("runtime directory: not protected", zap.String("what", n))
	}
	xdg, notes := envRunRules(p)
	for _, n := range notes {
		// Rare (a place of "/", the home or the project, a path no
		// pattern can name), and the line below would otherwise claim
		// more than holds.
		f.Warnf("a rule not followed where your environment moves its files: %s", n)
	}
	if line := describeEnv(xdg); line != "" && !opts.Quiet {
		fmt.Fprintf(f.Err, "aigate: %s\n", line)
	}
	req.DenyWrite = append(append(req.DenyWrite, units...), xdg.Write...)
	req.DenyRead = append(append(req.DenyRead, secrets...), xdg.Read...)
	req.DenyExec, req.ExceptRead = xdg.Exec, xdg.ExceptRead
	if early != nil {
		// The agent moves the waiting helper in while it builds the
		// sandbox and answers once enforcement is complete; start then
		// only gives the go-ahead (no place round trip).
		req.Place = &api.PlaceRequest{PID: early.h.Pid()}
	}
	clones := guardClones(p.id.home, p.id.uid, p.loaded.Paths.User)
	// What no rule could protect during the run is checked by the agent
	// once the sandbox is gone, also after a kill -9 of this process
	// (agent/afterrun.go): the git directories made in the project are
	// defused, a changed marketplace clone moved aside; ended.Notes
	// says what it did.
	req.AfterRun = &api.AfterRun{Git: &api.GitCheck{Known: gitDirs}, Clones: clones.request()}
	// After makeToolDirs, which makes the ide/ directories the agent
	// watches for locks written during the run.
	ide, notes := ideLocks(p.id.home, p.claudeDir, p.loaded.Paths.User)
	for _, n := range notes {
		f.Log.Debug("IDE locks: not read", zap.String("what", n))
	}
	req.IDELocks = ide
	// The session lives until the command is done and cleaned up, not
	// until ctx: main cancels ctx on SIGINT and SIGTERM, which run handles
	// itself (a closed session would make the agent kill the command).
	sess, emb, err := createSandbox(context.WithoutCancel(ctx), f, opts, p.choice, req)
	if err != nil {
		return nil, err
	}
	s := &sandboxRun{f: f, opts: opts, p: p, sess: sess, emb: emb, sigs: sigs, guard: guard, early: early, covers: req.LandlockCovers}
	if early != nil {
		s.join = early.join   // finished by end
		s.stdio = early.stdio // finished by end
	}
	for _, w := range sess.Warnings {
		f.Warnf("%s", w)
	}
	if choice := p.choice; (choice == policy.BackendLSM || choice == policy.BackendFanotify) && sess.Sandbox.Backend != string(choice) {
		_, _ = sess.End(5 * time.Second)
		s.finishAgent()
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: fmt.Errorf("refusing to run %s: the %s backend was asked for, but the running agent enforces with %s; use --backend auto, or restart the agent with --backend %s", opts.Args[0], choice, sess.Sandbox.Backend, choice)}
	}
	if sess.Sandbox.Mode == policy.ModeAudit && !opts.Quiet {
		f.Warnf("audit mode: nothing is blocked, what would be is reported")
	}
	f.Log.Debug("sandbox", zap.String("name", sess.Sandbox.Name), zap.String("backend", sess.Sandbox.Backend), zap.Bool("embedded agent", emb != nil))

	moved := ""
	if p.claudeDir != "" {
		moved = tildeHome(p.claudeDir, p.id.home) + "/"
	}
	s.rep = newRunReporter(f, reportOptions{Quiet: opts.Quiet, JSON: eventsOut, Lines: p.lines, ClaudeDir: moved})
	return s, nil
}

// finishAgent releases the agent run embeds, if any: from the sandbox's
// creation on, the agent (and, when embedded, this process) must be
// released on every path.
func (s *sandboxRun) finishAgent() {
	if s.emb != nil {
		s.emb.finish(s.f, s.sigs)
	}
}

// start starts the command in the sandbox, fail-closed: the sandbox
// exists and every check that its enforcement is complete (Landlock,
// unix sockets) has passed before launch.Start, whose helper the agent
// moves into the sandbox before it execs the command. On any failure
// the sandbox is ended and the command never started.
func (s *sandboxRun) start() (*sandbox.Child, error) {
	var cmd *exec.Cmd // nil when the helper was started early
	if s.early == nil {
		cmd = s.command()
		if err := s.maskOutput(cmd); err != nil {
			s.end(false)
			return nil, refusing(cmdutil.ExitSandbox, s.opts.Args[0], err)
		}
	}
	if err := s.checkConfinement(); err != nil {
		s.end(false)
		return nil, err
	}
	if err := s.routeLines(cmd); err != nil {
		s.end(false)
		return nil, refusing(cmdutil.ExitSandbox, s.opts.Args[0], err)
	}
	// The real terminal is the pty's from here (raw mode, what is typed).
	if s.stdio != nil {
		if err := s.stdio.begin(); err != nil {
			s.end(false)
			return nil, refusing(cmdutil.ExitSandbox, s.opts.Args[0], err)
		}
	}
	var child *sandbox.Child
	var err error
	if s.early != nil {
		child, err = s.early.h.Start(s.sess)
	} else {
		child, err = launch.Start(s.sess, cmd)
	}
	if s.join != nil {
		s.join.started()
	}
	if err != nil {
		code := cmdutil.ExitSandbox
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = cmdutil.ExitNotFound
		}
		s.end(false)
		return nil, refusing(code, s.opts.Args[0], err)
	}
	if s.stdio != nil {
		if s.emb != nil && s.sess.Sandbox.Backend == string(policy.BackendFanotify) {
			s.stdio.keepRunning()
		}
		s.stdio.started(child.Pid())
	}
	return child, nil
}

// command is the command as the plan resolved it, with aigate's stdio
// and the identity's credentials.
func (s *sandboxRun) command() *exec.Cmd { return commandOf(s.f, s.opts, s.p) }

func commandOf(f *cmdutil.Factory, opts *runOptions, p *runPlan) *exec.Cmd {
	return &exec.Cmd{
		Path:   p.path,
		Args:   opts.Args,
		Env:    p.env,
		Stdin:  f.In,
		Stdout: f.Out,
		Stderr: f.Err,
		// No Setpgid, Setsid or Foreground: the command stays in aigate's
		// process group, which is the terminal's foreground group, so the
		// terminal's signals and SIGWINCH reach it as they would without
		// aigate.
		SysProcAttr: &syscall.SysProcAttr{Credential: p.id.cred},
	}
}

// maskOutput gives the command masking stdio when the policy masks
// output (mask_output), filtering stdio when its output reaches a
// terminal (filterStdio), and does nothing otherwise.
func (s *sandboxRun) maskOutput(cmd *exec.Cmd) error {
	if s.p.masker == nil && !filtersTerminal(s.f, s.opts) {
		return nil
	}
	// Only the command's stdio change: it is placed in the sandbox
	// by the same path. On a pty it leads its own session there,
	// whose line discipline signals it (docs/run.md).
	stdio, err := newRunStdio(s.f, s.p.masker, s.p.lines, stdioOptions{pty: true, filter: !s.opts.RawTerminal})
	if err != nil {
		return err
	}
	s.stdio = stdio
	if !s.opts.Quiet && s.p.masker != nil {
		stdio.announce(s.f, len(s.p.compiled.Mask))
	}
	useStdio(cmd, stdio)
	return nil
}

// filtersTerminal reports whether the command's output reaches a
// terminal, which it then gets through the filter (termfilter) unless
// --raw-terminal.
func filtersTerminal(f *cmdutil.Factory, opts *runOptions) bool {
	return !opts.RawTerminal && (isTerminal(f.Out) || isTerminal(f.Err))
}

// useStdio gives cmd the stdio, and the pty as its controlling terminal
// in a session of its own when there is one.
func useStdio(cmd *exec.Cmd, stdio *runStdio) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	if stdio.Ctty {
		cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, stdio.CttyFD
	}
}

// restoreTerminal gives the terminal its mode back if masking took it.
func (s *sandboxRun) restoreTerminal() {
	if s.stdio != nil {
		s.stdio.finish()
	}
}

// checkConfinement sets the Landlock domain the command enters (launch
// applies sess.Landlock) and refuses a sandbox whose backend cannot
// confine it: no Landlock where the fanotify backend needs it, or a unix
// socket the fanotify backend would leave open.
func (s *sandboxRun) checkConfinement() error {
	sess, p := s.sess, s.p
	sess.Landlock = landlockOptions(p.pol, sess.Sandbox.Backend, p.id.home, p.loaded.Paths, os.Getenv)
	if sess.Sandbox.Backend == string(policy.BackendFanotify) {
		sess.Landlock.Covered = s.covers
	}
	if err := checkLandlock(s.f, sess.Sandbox.Backend, sess.Landlock, landlock.ABI()); err != nil {
		return refusing(cmdutil.ExitNoEnforcement, s.opts.Args[0], err)
	}
	// Before Linux 6.7 the fanotify backend confines no unix socket at
	// all (status says so); the entry is refused there too, as it would
	// be unsafe on the next kernel.
	if sess.Sandbox.Backend == string(policy.BackendFanotify) && sess.Sandbox.Mode != policy.ModeAudit {
		rs := sandboxDomain(sess.Landlock, landlock.ABI())
		if err := checkUnixPlant(p.pol, p.id.home, rs, sandboxUser(p.id), landlock.OSStat{}); err != nil {
			return refusing(cmdutil.ExitPolicy, s.opts.Args[0], err)
		}
	}
	return nil
}

// routeLines decides where aigate's lines go while the command runs: kept
// back while it owns the terminal, joined at its line boundaries on
// pipes and files.
func (s *sandboxRun) routeLines(cmd *exec.Cmd) error {
	// From here the command writes: aigate's lines must not garble it
	// (runjoin.go).
	if s.opts.Quiet {
		return nil
	}
	f, lines := s.f, s.p.lines
	if s.early != nil {
		// The helper has its stdio already: joined (prepareEarly) when
		// joinsLines, as below.
		if s.join != nil {
			lines.w = s.join
		}
		if !isTerminal(f.Err) {
			return nil
		}
	}
	outFile, errFile, join := joinsLines(f, s.opts, s.stdio)
	switch {
	case isTerminal(f.Err):
		s.kept = &deferredLines{}
		fmt.Fprintf(f.Err, "%sthe terminal is %s's until it ends: blocked operations are listed then; `aigate watch` shows them live\n",
			events.Prefix, filepath.Base(s.opts.Args[0]))
		lines.w = s.kept
	case join:
		j, stdout, stderr, err := newLineJoiner(outFile, errFile)
		if err != nil {
			return err
		}
		s.join = j
		cmd.Stdout, cmd.Stderr = stdout, stderr
		lines.w = s.join
	}
	return nil
}

// reportEvents reports the sandbox's events (lines, --events, the
// summary) until the session ends.
func (s *sandboxRun) reportEvents() {
	s.pumpDone = s.rep.start(s.sess.Events(), nil)
}

// wait passes SIGTERM and SIGHUP on to the command until it exits (SIGINT
// and SIGQUIT reach it from the terminal), ends the sandbox, and returns
// the command's status as run's.
func (s *sandboxRun) wait(child *sandbox.Child) error {
	for running := true; running; {
		select {
		case sig := <-s.sigs:
			switch sig {
			case syscall.SIGTERM, syscall.SIGHUP:
				_ = child.Signal(sig)
			case syscall.SIGINT, syscall.SIGQUIT:
				// On a pty that what is typed does not reach (stdin
				// not a terminal), Ctrl-C signals aigate, not the
				// command in its own session: passed on.
				if s.stdio != nil && s.stdio.term != nil && !s.stdio.term.input() {
					_ = child.Signal(sig)
				}
			}
		case <-child.Done():
			running = false
		}
	}
	code, werr := child.Wait()
	s.end(true)
	if werr != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: werr}
	}
	return cmdutil.SilentExit(cmdutil.ExitCode(code))
}

// endTimeout is how long end waits for the agent to end the sandbox: above
// the agent's own wait for a backlog of the sandbox's last events (its
// settleLimit, 10 s) and its work after the run, so that a loaded machine
// (or a TCG guest) does not lose those events to the client giving up
// first. An agent that does not answer in time is left: closing the
// session ends the sandbox all the same.
const endTimeout = 20 * time.Second

// end ends the sandbox (the agent kills what the command left in it),
// then prints what the run leaves: the command's last output, the event
// lines kept back, the summary; releases the agent and puts back the
// policy directory if the command changed it. started: the command ran,
// so its events are pumped until the session ends.
func (s *sandboxRun) end(started bool) {
	f, sess := s.f, s.sess
	if s.early != nil {
		s.early.h.Abort() // exits without exec'ing unless start gave the go-ahead
	}
	ended, err := sess.End(endTimeout)
	if started {
		<-s.pumpDone
	}
	// The command's last output (what the sandbox's end released)
	// comes before the summary, on a terminal in its own mode.
	if s.stdio != nil {
		s.stdio.finish()
	}
	if s.join != nil {
		s.join.finish()
	}
	if s.kept != nil {
		s.p.lines.w = f.Err
		_, _ = f.Err.Write(s.kept.take())
	}
	if err != nil {
		f.Warnf("sandbox %s: %v", sess.Sandbox.Name, err)
	}
	var attributed, kernelDropped uint64
	if ended != nil {
		attributed, kernelDropped = ended.Events, ended.KernelDropped
	}
	s.rep.finish(sess.Dropped(), attributed, kernelDropped)
	s.finishAgent()
	// The sandbox is gone: nothing inside can race the check.
	if msg, err := s.guard.restore(f.Now()); msg != "" || err != nil {
		if msg != "" {
			f.Warnf("%s", msg)
		}
		if err != nil {
			f.Warnf("could not restore your policy: %v; check %s before the next run", err, s.p.loaded.Paths.Dir)
		}
	}
	if ended != nil {
		// What the agent did once the sandbox ended (api.AfterRun).
		for _, n := range ended.Notes {
			f.Warnf("%s", n)
		}
	}
}

// createRequest is what the agent needs to build the caller's policy: the
// config files as read (the project file exactly as its trust was decided
// on), the trust decision, and the anchors of "~/" and relative patterns.
func createRequest(loaded *config.Loaded, id *identity, mode policy.Mode, args []string) (api.CreateRequest, error) {
	req := api.CreateRequest{
		Trust:       trustString(loaded.Trust),
		Home:        id.home,
		ProjectRoot: loaded.Paths.ProjectRoot,
		Mode:        mode,
		Command:     api.RecordedCommand(args),
		Path:        os.Getenv("PATH"),
	}
	if loaded.Global != nil {
		// The content Load read (as the user, under sudo): reading the
		// path again here, as root, could read another file.
		req.Global = &api.File{Path: loaded.Paths.Global, Data: loaded.GlobalData}
	}
	if loaded.Project != nil {
		req.Project = &api.File{Path: loaded.Paths.Project, Data: loaded.ProjectData}
	}
	return req, nil
}

func trustString(t config.TrustState) string {
	switch t {
	case config.Trusted:
		return "trusted"
	case config.Changed:
		return "changed"
	}
	return "untrusted"
}

// createSandbox asks the agent on opts.Socket for the sandbox. When no
// agent runs and run is root, it starts one in this process on that
// socket (emb is then non-nil) and asks it; when another agent wins the
// race for the socket, it uses that one.
func createSandbox(ctx context.Context, f *cmdutil.Factory, opts *runOptions, choice policy.BackendChoice, req api.CreateRequest) (*api.Session, *embeddedAgent, error) {
	if !opts.Quiet {
		defer slowNotice(f.Err, time.Second, setupNotice)()
	}
	c := api.NewClient(opts.Socket)
	var emb *embeddedAgent
	asked := false // the user was asked to accept a loosened policy
	for attempt := 0; ; attempt++ {
		sess, err := c.CreateSandbox(ctx, req)
		if err == nil {
			return sess, emb, nil
		}
		if !asked && acceptLoosened(ctx, f, c, req, err) {
			asked = true
			continue
		}
		if !errors.Is(err, api.ErrNoAgent) || emb != nil {
			if emb != nil {
				emb.close(f)
			}
			return nil, nil, createError(opts.Args[0], err)
		}
		if f.Env.Euid != 0 {
			return nil, nil, &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: fmt.Errorf("refusing to run %s: no aigate agent is running (nothing listens on %s), and starting one needs root: run `sudo aigate setup` once (it installs and starts the agent), or `sudo aigate agent` in another terminal", opts.Args[0], c.Socket)}
		}
		if opts.releaseGC != nil {
			// Loading the BPF objects and walking the home allocate
			// far more than the client's set-up (gchold.go).
			opts.releaseGC()
		}
		emb, err = startEmbedded(f, opts, choice)
		if errors.Is(err, api.ErrAgentRunning) && attempt < 50 {
			// Another agent holds the socket (starting, or a run that
			// embeds one): use it once it answers.
			emb = nil
			select {
			case <-ctx.Done():
				return nil, nil, &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: ctx.Err()}
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return nil, nil, err
		}
	}
}

// acceptLoosened offers, on a terminal, to accept the global policy the
// agent refused as looser than the one last accepted, and reports whether
// it was accepted (then the sandbox is asked for again). The sandboxed
// command has not started: the keyboard is the user's, and this process
// is outside every sandbox, which the agent checks. Without a terminal
// the refusal stands, naming the command that accepts.
func acceptLoosened(ctx context.Context, f *cmdutil.Factory, c *api.Client, req api.CreateRequest, err error) bool {
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodePolicy || !f.CanAsk() {
		return false
	}
	ask := api.PolicyRequest{Action: api.PolicyCheck, Global: req.Global, Home: req.Home, Owner: req.Owner}
	st, cerr := c.Policy(ctx, ask)
	if cerr != nil || !st.Held || len(st.Loosened) == 0 {
		return false // refused for another reason
	}
	name := filepath.Join(req.Home, config.DirName, config.GlobalName)
	if req.Global != nil {
		name = req.Global.Path
	}
	f.Warnf("%s", ae.Message)
	if !f.Confirm(fmt.Sprintf("Accept %s as your policy and run? [y/N] ", name)) {
		return false
	}
	ask.Action = api.PolicyAccept
	if _, cerr := c.Policy(ctx, ask); cerr != nil {
		f.Warnf("accept %s: %v", name, cerr)
		return false
	}
	return true
}

// createError maps the agent's refusal to run's exit codes.
func createError(command string, err error) error {
	err = fmt.Errorf("refusing to run %s: %w", command, err)
	var ae *api.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case api.CodePolicy:
			return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
		}
	}
	return &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: err}
}

// loadAsUser loads the configuration of the user --user names (files
// read with that user's identity, as Locate does under sudo) unless it is
// the one already loaded.
func loadAsUser(f *cmdutil.Factory, name string, loaded *config.Loaded) (*config.Loaded, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return nil, cmdutil.UsageErrorf("--user %s: %v", name, err)
	}
	if u.Uid == strconv.Itoa(loaded.Paths.User.UID) || u.Uid == "0" {
		return loaded, nil
	}
	env := f.Env
	getenv := env.Getenv
	env.Getenv = func(k string) string {
		switch k {
		case "SUDO_UID":
			return u.Uid
		case "SUDO_USER", "SUDO_GID":
			return ""
		}
		return getenv(k)
	}
	p, err := config.Locate(config.LocateOptions{ConfigFile: f.ConfigFile(), Env: env})
	if err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: fmt.Errorf("--user %s: %w", name, err)}
	}
	l, err := config.Load(p)
	if err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: fmt.Errorf("--user %s: %w", name, err)}
	}
	return l, nil
}

// runIdentity decides who the command runs as: --user, else the user who
// ran sudo, else aigate's own user.
func runIdentity(flagUser, name, home string, sudo bool, uid, gid int) (*identity, error) {
	if flagUser != "" {
		u, err := user.Lookup(flagUser)
		if err != nil {
			if _, nerr := strconv.Atoi(flagUser); nerr == nil {
				u, err = user.LookupId(flagUser)
			}
		}
		if err != nil {
			return nil, cmdutil.UsageErrorf("--user %s: %v", flagUser, err)
		}
		return identityOf(u)
	}
	if sudo {
		u, err := user.LookupId(strconv.Itoa(uid))
		if err != nil {
			return nil, &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: fmt.Errorf("find the user who ran sudo (uid %d): %w", uid, err)}
		}
		id, err := identityOf(u)
		if err != nil {
			return nil, err
		}
		id.home = home
		return id, nil
	}
	return &identity{name: name, home: home, uid: uid, gid: gid}, nil
}

func identityOf(u *user.User) (*identity, error) {
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: fmt.Errorf("user %s: uid %q or gid %q is not a number", u.Username, u.Uid, u.Gid)}
	}
	id := &identity{name: u.Username, home: u.HomeDir, uid: uid, gid: gid}
	if uid == 0 {
		return id, nil
	}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: fmt.Errorf("list the groups of user %s: %w", u.Username, err)}
	}
	var groups []uint32
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			groups = append(groups, uint32(n))
		}
	}
	// Groups is always set, even empty: nil would keep root's groups.
	if groups == nil {
		groups = []uint32{}
	}
	id.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}
	id.chownE = true
	return id, nil
}

// commandEnv is aigate's environment with the identity's HOME, USER and
// LOGNAME, so that a tool started through sudo finds its own config.
func commandEnv(environ []string, id *identity) []string {
	if id.cred == nil {
		return environ
	}
	set := map[string]string{"HOME": id.home, "USER": id.name, "LOGNAME": id.name}
	out := make([]string, 0, len(environ)+len(set))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok {
			continue
		}
		out = append(out, kv)
	}
	for _, k := range []string{"HOME", "USER", "LOGNAME"} {
		out = append(out, k+"="+set[k])
	}
	return out
}

// lookPath finds name in the PATH of env, as the command's shell would.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("command %s: %w", name, err)
		}
		return name, nil
	}
	pathEnv := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %s: not found in PATH (%s)", name, pathEnv)
}
