//go:build linux

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

func init() { register(newRunCmd) }

// runOptions are the inputs of `aigate run`.
type runOptions struct {
	Audit      bool
	Quiet      bool
	EventsFile string
	User       string
	Backend    string
	Args       []string

	// openBackend and parent are replaced by tests.
	openBackend func(policy.BackendChoice, backend.Options) (enforce.Backend, error)
	parent      string // cgroup holding the sandbox, below the v2 mount
}

func newRunCmd(f *Factory) *cobra.Command {
	opts := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]",
		Short: "Run a command in a kernel-enforced sandbox",
		Long: `Run COMMAND in a new sandbox whose file opens, program executions and
network connections the kernel checks against your merged policy (global
~/.aigate/config.yaml and the project's .aigate.yaml).

The command gets the terminal as it is: interactive tools (raw mode,
resizes, Ctrl-C, Ctrl-Z) work as without aigate. Started with sudo, it runs
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
  3  no usable enforcement (kernel not ready, not root): COMMAND not started
  4  the policy is invalid: COMMAND not started
  5  the sandbox could not be set up: COMMAND not started
  127  COMMAND not found`,
		Example: `  sudo aigate run -- claude
  sudo aigate run --audit --events /tmp/aigate.jsonl -- aider
  sudo aigate run --backend fanotify -- cat .env`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return usageErrorf("put -- before the command: aigate run [flags] -- %s", strings.Join(args, " "))
			}
			opts.Args = args
			return runRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.Audit, "audit", false, "allow everything, report what would have been blocked")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print no event lines and no summary")
	fl.StringVar(&opts.EventsFile, "events", "", "append every event as a JSON line to `FILE`")
	fl.StringVar(&opts.User, "user", "", "run COMMAND as `USER` (default: the user who ran sudo)")
	fl.StringVar(&opts.Backend, "backend", "", "enforcement backend: auto, lsm or fanotify (default: the config's backend, else auto)")
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

func runRun(ctx context.Context, f *Factory, opts *runOptions) error {
	if f.Env.Euid != 0 {
		return &exitError{ExitNoEnforcement, errors.New("aigate run needs root to set up enforcement: run it with sudo (sudo aigate run -- ...); it still runs the command as you")}
	}
	choice := policy.BackendChoice(opts.Backend)
	switch choice {
	case "", policy.BackendAuto, policy.BackendLSM, policy.BackendFanotify:
	default:
		return usageErrorf("--backend %q: want auto, lsm or fanotify", opts.Backend)
	}

	// Policy.
	loaded, err := f.Load()
	if err != nil {
		return &exitError{ExitPolicy, err}
	}
	id, err := runIdentity(opts.User, loaded.Paths.User.Name, loaded.Paths.User.Home, loaded.Paths.User.Sudo, loaded.Paths.User.UID, loaded.Paths.User.GID)
	if err != nil {
		return err
	}
	pol, warns := loaded.Policy()
	for _, w := range warns {
		f.warnf("%s", w)
	}
	env := loaded.PolicyEnv()
	// "~/" means the home of whoever runs the tool: that is whose secrets
	// it can reach.
	env.Home = id.home
	compiled, err := policy.Compile(pol, env)
	if err != nil {
		return &exitError{ExitPolicy, err}
	}
	mode := compiled.Mode
	if opts.Audit {
		mode = policy.ModeAudit
	}
	if choice == "" {
		choice = compiled.Backend
	}

	// The command, resolved with the PATH it will run with.
	childEnv := commandEnv(os.Environ(), id)
	path, err := lookPath(opts.Args[0], childEnv)
	if err != nil {
		return &exitError{ExitNotFound, err}
	}

	var eventsOut io.Writer
	if opts.EventsFile != "" {
		ef, err := openEventsFile(opts.EventsFile, id)
		if err != nil {
			return &exitError{ExitSandbox, err}
		}
		defer ef.Close()
		eventsOut = ef
	}

	// Signals are caught from here on: SIGINT and SIGQUIT from the
	// terminal reach the command directly (same process group) and must not
	// stop aigate before it has cleaned up; SIGTERM and SIGHUP are sent to
	// aigate alone and are passed on. Caught (not ignored) signals are reset
	// to their defaults in the command by execve.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// Enforcement.
	open := opts.openBackend
	if open == nil {
		open = backend.Open
	}
	be, err := open(choice, backend.Options{
		Home:        env.Home,
		ProjectRoot: env.ProjectRoot,
		Logger:      f.Log,
		Warn:        func(s string) { f.warnf("%s", s) },
	})
	if err != nil {
		return &exitError{ExitNoEnforcement, fmt.Errorf("refusing to run %s without enforcement: %w", opts.Args[0], err)}
	}
	f.Log.Debug("backend", zap.String("name", be.Name()))

	sb, err := sandbox.Create(ctx, sandbox.Config{Backend: be, Policy: compiled, Mode: mode, Parent: opts.parent})
	if err != nil {
		return &exitError{ExitSandbox, errors.Join(fmt.Errorf("refusing to run %s: %w", opts.Args[0], err), be.Close())}
	}
	for _, w := range sb.Warnings {
		f.warnf("%s", w)
	}
	if mode == policy.ModeAudit && !opts.Quiet {
		f.warnf("audit mode: nothing is blocked, what would be is reported")
	}

	rep := newReporter(f, opts.Quiet, eventsOut, compiled, sb.Info.Name, be.Name())
	pumpDone := make(chan struct{})
	go func() {
		defer close(pumpDone)
		evs := be.Events()
		if evs == nil {
			return
		}
		for e := range evs {
			rep.event(e)
		}
	}()
	cleanup := func() error {
		serr := sb.Close()
		stats, statErr := be.Stats()
		berr := be.Close() // closes Events: the pump drains and ends
		<-pumpDone
		rep.finish(stats, statErr)
		if err := errors.Join(serr, berr); err != nil {
			return fmt.Errorf("clean up sandbox %s: %w", sb.Info.Name, err)
		}
		return nil
	}

	// A signal that arrived during setup ends the run before the command
	// starts.
	select {
	case s := <-sigs:
		if cerr := cleanup(); cerr != nil {
			f.warnf("%v", cerr)
		}
		return silentExit(ExitCode(128 + int(s.(syscall.Signal))))
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
	child, err := sb.Start(cmd)
	if err != nil {
		code := ExitSandbox
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = ExitNotFound
		}
		return &exitError{code, errors.Join(err, cleanup())}
	}
	f.Log.Debug("started", zap.Int("pid", child.Pid()), zap.String("sandbox", sb.Info.Name))

	tick := time.NewTicker(events.DefaultWindow / 2)
	defer tick.Stop()
	for running := true; running; {
		select {
		case s := <-sigs:
			switch s {
			case syscall.SIGTERM, syscall.SIGHUP:
				_ = child.Signal(s)
			}
		case <-tick.C:
			rep.flush()
		case <-child.Done():
			running = false
		}
	}
	code, werr := child.Wait()
	if cerr := cleanup(); cerr != nil {
		f.warnf("%v", cerr)
	}
	if werr != nil {
		return &exitError{ExitSandbox, werr}
	}
	return silentExit(ExitCode(code))
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
			return nil, usageErrorf("--user %s: %v", flagUser, err)
		}
		return identityOf(u)
	}
	if sudo {
		u, err := user.LookupId(strconv.Itoa(uid))
		if err != nil {
			return nil, &exitError{ExitSandbox, fmt.Errorf("find the user who ran sudo (uid %d): %w", uid, err)}
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
		return nil, &exitError{ExitSandbox, fmt.Errorf("user %s: uid %q or gid %q is not a number", u.Username, u.Uid, u.Gid)}
	}
	id := &identity{name: u.Username, home: u.HomeDir, uid: uid, gid: gid}
	if uid == 0 {
		return id, nil
	}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, &exitError{ExitSandbox, fmt.Errorf("list the groups of user %s: %w", u.Username, err)}
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

// openEventsFile opens --events for appending; a new file belongs to the
// user the command runs as.
func openEventsFile(path string, id *identity) (*os.File, error) {
	_, statErr := os.Lstat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open events file: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) && id.chownE {
		_ = f.Chown(id.uid, id.gid)
	}
	return f, nil
}

// reporter turns the backend's events into lines, JSON and the summary.
type reporter struct {
	f       *Factory
	quiet   bool
	printer *events.Printer
	json    *events.JSONWriter
	policy  *policy.Compiled
	sandbox string
	backend string
	mu      sync.Mutex
	tally   events.Summary
	jsonErr error
}

func newReporter(f *Factory, quiet bool, jsonOut io.Writer, c *policy.Compiled, sandbox, backend string) *reporter {
	r := &reporter{f: f, quiet: quiet, policy: c, sandbox: sandbox, backend: backend}
	if !quiet {
		color := false
		if ef, ok := f.Err.(*os.File); ok {
			color = events.ColorFor(ef)
		}
		r.printer = events.NewPrinter(f.Err, events.PrinterOptions{Style: events.Style{Color: color}})
	}
	if jsonOut != nil {
		r.json = events.NewJSONWriter(jsonOut)
	}
	return r
}

func (r *reporter) event(e events.Event) {
	if e.Sandbox == "" {
		e.Sandbox = r.sandbox
	}
	if e.Backend == "" {
		e.Backend = r.backend
	}
	if e.RuleText == "" && e.Rule != 0 {
		if rule, ok := r.policy.Rule(policy.RuleID(e.Rule)); ok {
			e.RuleText = rule.Pattern
		}
	}
	r.mu.Lock()
	r.tally.Add(e)
	if r.json != nil && r.jsonErr == nil {
		if err := r.json.Write(e); err != nil {
			r.jsonErr = err
			r.f.warnf("%v: no more events are written to --events", err)
		}
	}
	r.mu.Unlock()
	if r.printer != nil {
		r.printer.Print(e)
	}
}

func (r *reporter) flush() {
	if r.printer != nil {
		r.printer.Flush(false)
	}
}

// finish prints the pending repeat lines and the summary. The backend's
// counters are exact even when events were dropped, so they win when
// available.
func (r *reporter) finish(stats enforce.Stats, statErr error) {
	if r.printer != nil {
		r.printer.Flush(true)
	}
	if r.quiet {
		return
	}
	sum := &r.tally
	if statErr == nil {
		var exact events.Summary
		for _, c := range stats.Violations {
			exact.AddCount(c.Op, c.Audit, c.Value)
		}
		if exact.Total() >= r.tally.Total() {
			sum = &exact
		}
		if stats.EventsDropped > 0 {
			r.f.warnf("%d events were dropped (not printed or recorded); the summary counts them", stats.EventsDropped)
		}
	}
	if s := sum.String(); s != "" {
		for _, line := range strings.Split(s, "\n") {
			fmt.Fprintf(r.f.Err, "%s%s\n", events.Prefix, line)
		}
	}
}
