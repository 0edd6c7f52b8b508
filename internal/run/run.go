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

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/mask"
	"github.com/aigate-dev/aigate/internal/policy"
)

// runOptions are the inputs of `aigate run`.
type runOptions struct {
	Audit      bool
	Quiet      bool
	EventsFile string
	User       string
	Backend    string
	Args       []string
	// Socket is the agent's; MetricsAddr is where an agent that run
	// embeds serves /metrics ("" for none).
	Socket      string
	MetricsAddr string

	// openBackend and parent are replaced by tests; they serve the agent
	// that run embeds.
	openBackend func(policy.BackendChoice, backend.Options) (enforce.Backend, error)
	parent      string // cgroup holding the sandboxes, below the v2 mount
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

The aigate agent creates the sandbox: run asks it over its socket, so no
sudo is needed once it runs (sudo aigate setup installs it). Without an
agent, run as root starts one inside itself for as long as it runs, on the
same socket, so aigate watch and the metrics work meanwhile.

The command gets the terminal as it is: interactive tools (raw mode,
resizes, Ctrl-C, Ctrl-Z) work as without aigate. When the policy has
mask_output expressions, its output is masked instead: on a terminal it
runs on a pseudo-terminal of aigate's, on pipes its output goes through
masking pipes (docs/run.md, "Masking secrets in output"). Started with sudo, it runs
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
  4  the policy is invalid: COMMAND not started
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
	fl.StringVar(&opts.EventsFile, "events", "", "append every event as a JSON line to `FILE`")
	fl.StringVar(&opts.User, "user", "", "run COMMAND as `USER` (root only; default: the user who ran sudo)")
	fl.StringVar(&opts.Backend, "backend", "", "enforcement backend: auto, lsm or fanotify (default: the config's backend, else auto)")
	fl.StringVar(&opts.Socket, "socket", api.SocketPath(), "the agent's socket `PATH` ($"+api.SocketEnv+" changes the default)")
	fl.StringVar(&opts.MetricsAddr, "metrics-addr", cmdutil.DefaultMetricsAddr, "where an agent that run starts itself serves metrics (\"\" for none)")
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
func runRun(ctx context.Context, f *cmdutil.Factory, opts *runOptions) error {
	if name, ok := cmdutil.InsideSandbox(); ok {
		return cmdutil.InsideError("aigate run", name)
	}
	choice := policy.BackendChoice(opts.Backend)
	switch choice {
	case "", policy.BackendAuto, policy.BackendLSM, policy.BackendFanotify:
	default:
		return cmdutil.UsageErrorf("--backend %q: want auto, lsm or fanotify", opts.Backend)
	}

	// Policy. The agent compiles it again from the same bytes; compiling
	// here too stops a broken file before anything is asked of anyone.
	loaded, err := f.Load()
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	if opts.User != "" && f.Env.Euid == 0 {
		// The command runs as --user's user: so does their policy, read
		// as that user exactly as under sudo (issue 13: root's applied).
		if loaded, err = loadAsUser(f, opts.User, loaded); err != nil {
			return err
		}
	}
	id, err := runIdentity(opts.User, loaded.Paths.User.Name, loaded.Paths.User.Home, loaded.Paths.User.Sudo, loaded.Paths.User.UID, loaded.Paths.User.GID)
	if err != nil {
		return err
	}
	if f.Env.Euid != 0 {
		if id.uid != loaded.Paths.User.UID {
			return cmdutil.UsageErrorf("--user %s: only root can run a command as another user", opts.User)
		}
		id.cred, id.chownE = nil, false // setgroups needs root; nothing to change anyway
	}
	if err := cmdutil.AgentTrustState(f, loaded, opts.Socket); err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	pol, _ := loaded.Policy() // warnings come back from the agent, once
	env := loaded.PolicyEnv()
	// "~/" means the home of whoever runs the tool: that is whose secrets
	// it can reach.
	env.Home = id.home
	compiled, err := policy.Compile(pol, env)
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	masker, err := mask.Compile(compiled.Mask)
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	// aigate's own lines are masked too while masking is on.
	lines := &lineWriter{w: f.Err, m: masker}
	var mode policy.Mode
	if opts.Audit {
		mode = policy.ModeAudit
	}
	if choice == "" {
		choice = compiled.Backend
	}

	// The command, resolved with the PATH it will run with.
	childEnv, removed := compiled.Env.Filter(commandEnv(os.Environ(), id))
	if len(removed) > 0 {
		f.Log.Debug("deny_env", zap.Strings("removed", removed))
	}
	path, err := lookPath(opts.Args[0], childEnv)
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitNotFound, Err: err}
	}

	var eventsOut io.Writer
	if opts.EventsFile != "" {
		inv := loaded.Paths.User
		ef, err := openEventsFile(opts.EventsFile, inv, id.chownE && id.uid != inv.UID, id.uid, id.gid)
		if err != nil {
			return &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: err}
		}
		defer ef.Close()
		eventsOut = ef
	}

	// Signals are caught from here on (runSignals); SIGTERM and SIGHUP
	// are passed on to the command.
	sigs, stopSignals := runSignals()
	defer stopSignals()

	req, err := createRequest(loaded, id, mode, opts.Args)
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: err}
	}
	if f.Env.Euid == 0 && id.uid != 0 {
		// Root acts for the user who ran sudo (or --user): the sandbox,
		// its events and `aigate watch` are theirs.
		owner := uint32(id.uid)
		req.Owner = &owner
	}
	// The session lives until the command is done and cleaned up, not
	// until ctx: main cancels ctx on SIGINT and SIGTERM, which run handles
	// itself (a closed session would make the agent kill the command).
	guard := guardPolicyDir(loaded.Paths.Dir, loaded.Paths.User)
	sess, emb, err := createSandbox(context.WithoutCancel(ctx), f, opts, choice, req)
	if err != nil {
		return err
	}
	// From here on the agent (and, when embedded, this process) must be
	// released on every path.
	finishAgent := func() {
		if emb != nil {
			emb.finish(f, sigs)
		}
	}
	for _, w := range sess.Warnings {
		f.Warnf("%s", w)
	}
	if (choice == policy.BackendLSM || choice == policy.BackendFanotify) && sess.Sandbox.Backend != string(choice) {
		_, _ = sess.End(5 * time.Second)
		finishAgent()
		return &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: fmt.Errorf("refusing to run %s: the %s backend was asked for, but the running agent enforces with %s; use --backend auto, or restart the agent with --backend %s", opts.Args[0], choice, sess.Sandbox.Backend, choice)}
	}
	if sess.Sandbox.Mode == policy.ModeAudit && !opts.Quiet {
		f.Warnf("audit mode: nothing is blocked, what would be is reported")
	}
	f.Log.Debug("sandbox", zap.String("name", sess.Sandbox.Name), zap.String("backend", sess.Sandbox.Backend), zap.Bool("embedded agent", emb != nil))

	rep := newRunReporter(f, reportOptions{Quiet: opts.Quiet, JSON: eventsOut, Lines: lines})
	pumpDone := make(chan struct{})
	var stdio *runStdio     // set when the policy masks output
	var join *lineJoiner    // set when event lines join the command's stderr
	var kept *deferredLines // set when they wait for the command's end
	cleanup := func(started bool) {
		ended, err := sess.End(5 * time.Second)
		if started {
			<-pumpDone
		}
		// The command's last output (what the sandbox's end released)
		// comes before the summary, on a terminal in its own mode.
		if stdio != nil {
			stdio.finish()
		}
		if join != nil {
			join.finish()
		}
		if kept != nil {
			lines.w = f.Err
			_, _ = f.Err.Write(kept.take())
		}
		if err != nil {
			f.Warnf("sandbox %s: %v", sess.Sandbox.Name, err)
		}
		var attributed uint64
		if ended != nil {
			attributed = ended.Events
		}
		rep.finish(sess.Dropped(), attributed)
		finishAgent()
		// The sandbox is gone: nothing inside can race the check.
		if msg, err := guard.restore(f.Now()); msg != "" || err != nil {
			if msg != "" {
				f.Warnf("%s", msg)
			}
			if err != nil {
				f.Warnf("could not restore your policy: %v; check %s before the next run", err, loaded.Paths.Dir)
			}
		}
	}

	// A signal that arrived during setup ends the run before the command
	// starts.
	select {
	case s := <-sigs:
		cleanup(false)
		return cmdutil.SilentExit(cmdutil.ExitCode(128 + int(s.(syscall.Signal))))
	default:
	}

	cmd := &exec.Cmd{
		Path:   path,
		Args:   opts.Args,
		Env:    childEnv,
		Stdin:  f.In,
		Stdout: f.Out,
		Stderr: f.Err,
		// No Setpgid, Setsid or Foreground: the command stays in aigate's
		// process group, which is the terminal's foreground group, so the
		// terminal's signals and SIGWINCH reach it as they would without
		// aigate.
		SysProcAttr: &syscall.SysProcAttr{Credential: id.cred},
	}
	if masker != nil {
		// Only the command's stdio change: it is placed in the sandbox
		// by the same path. On a pty it leads its own session there,
		// whose line discipline signals it (docs/run.md).
		stdio, err = newRunStdio(f, masker, lines, true)
		if err != nil {
			cleanup(false)
			return &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: fmt.Errorf("refusing to run %s: %w", opts.Args[0], err)}
		}
		// Whatever happens from here, the terminal gets its mode back
		// (finish is idempotent; a panic runs it too).
		defer stdio.finish()
		if !opts.Quiet {
			stdio.announce(f, len(compiled.Mask))
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
		if stdio.Ctty {
			cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
		}
	}
	sess.Landlock = landlockOptions(pol, sess.Sandbox.Backend, id.home, loaded.Paths, os.Getenv)
	if err := checkLandlock(f, sess.Sandbox.Backend, sess.Landlock, landlock.ABI()); err != nil {
		cleanup(false)
		return &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: fmt.Errorf("refusing to run %s: %w", opts.Args[0], err)}
	}
	// Before Linux 6.7 the fanotify backend confines no unix socket at
	// all (status says so); the entry is refused there too, as it would
	// be unsafe on the next kernel.
	if sess.Sandbox.Backend == string(policy.BackendFanotify) && sess.Sandbox.Mode != policy.ModeAudit {
		rs := sandboxDomain(sess.Landlock, landlock.ABI())
		if err := checkUnixPlant(pol, id.home, rs, sandboxUser(id), landlock.OSStat{}); err != nil {
			cleanup(false)
			return &cmdutil.StatusError{Code: cmdutil.ExitPolicy, Err: fmt.Errorf("refusing to run %s: %w", opts.Args[0], err)}
		}
	}
	// From here the command writes: aigate's lines must not garble it
	// (runjoin.go).
	if !opts.Quiet {
		errFile, errOK := f.Err.(*os.File)
		outFile, outOK := f.Out.(*os.File)
		switch {
		case isTerminal(f.Err):
			kept = &deferredLines{}
			fmt.Fprintf(f.Err, "%sthe terminal is %s's until it ends: blocked operations are listed then; `aigate watch` shows them live\n",
				events.Prefix, filepath.Base(opts.Args[0]))
			lines.w = kept
		case errOK && outOK && stdio == nil:
			j, stdout, stderr, err := newLineJoiner(outFile, errFile)
			if err != nil {
				cleanup(false)
				return &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: fmt.Errorf("refusing to run %s: %w", opts.Args[0], err)}
			}
			join = j
			cmd.Stdout, cmd.Stderr = stdout, stderr
			lines.w = join
		}
	}
	child, err := launch.Start(sess, cmd)
	if join != nil {
		join.started()
	}
	if err != nil {
		code := cmdutil.ExitSandbox
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = cmdutil.ExitNotFound
		}
		cleanup(false)
		return &cmdutil.StatusError{Code: code, Err: fmt.Errorf("refusing to run %s: %w", opts.Args[0], err)}
	}
	if stdio != nil {
		stdio.started(child.Pid())
	}
	go func() {
		defer close(pumpDone)
		rep.pump(sess.Events(), nil)
	}()
	f.Log.Debug("started", zap.Int("pid", child.Pid()), zap.String("sandbox", sess.Sandbox.Name))

	for running := true; running; {
		select {
		case s := <-sigs:
			switch s {
			case syscall.SIGTERM, syscall.SIGHUP:
				_ = child.Signal(s)
			}
		case <-child.Done():
			running = false
		}
	}
	code, werr := child.Wait()
	cleanup(true)
	if werr != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: werr}
	}
	return cmdutil.SilentExit(cmdutil.ExitCode(code))
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
		Command:     args,
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
	for attempt := 0; ; attempt++ {
		sess, err := c.CreateSandbox(ctx, req)
		if err == nil {
			return sess, emb, nil
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

// runIdentity decides who the command runs as: --user, else the user who
// ran sudo, else aigate's own user.
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
