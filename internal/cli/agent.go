//go:build linux

package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
)

type agentOptions struct {
	Socket      string
	MetricsAddr string
	Backend     string
	Group       string
	PinDir      string
	TrustDir    string
	// LandlockAudit enables the kernel's audit, so that the sandboxes'
	// Landlock refusals are reported (opt-in: docs/backends.md).
	LandlockAudit bool
}

func newAgentCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the aigate agent (the privileged daemon) in the foreground",
		Long: `Run the agent: the one privileged process that owns the enforcement backend
and creates sandboxes for users, who then need no sudo for aigate run.

It listens on a unix socket (mode 0660, group aigate: sudo aigate setup
creates the group and adds you), serves Prometheus metrics on --metrics-addr
(--metrics-addr "" turns them off), and logs to stderr. SIGTERM or SIGINT
stops it: the sandboxes it runs are ended (their processes killed), since
nothing would enforce their policies without it.

With the BPF-LSM backend the programs, links and maps are pinned under
--pin-dir, so a sandbox survives the agent being killed or crashing: the
kernel keeps enforcing it, and the next agent adopts it (same name, owner
and counters). With fanotify, a dying agent's sandboxes are killed.

Usually systemd runs it (sudo aigate setup installs the unit).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if fl := cmd.InheritedFlags().Lookup("log-level"); fl != nil && !fl.Changed && os.Getenv("AIGATE_LOG_LEVEL") == "" {
				// A daemon's log is its record of what happened: info
				// unless --log-level or AIGATE_LOG_LEVEL says otherwise.
				if log, err := newLogger("info", f.Err); err == nil {
					f.Log = log
				}
			}
			return runAgent(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Socket, "socket", api.SocketPath(), "listen on the unix socket `PATH` ($"+api.SocketEnv+" changes the default)")
	fl.StringVar(&opts.MetricsAddr, "metrics-addr", cmdutil.DefaultMetricsAddr, "serve Prometheus metrics on `ADDR` (\"\" to turn off)")
	fl.StringVar(&opts.Backend, "backend", "auto", "enforcement backend: auto, lsm or fanotify")
	fl.StringVar(&opts.Group, "group", api.Group, "group allowed to use the socket")
	fl.StringVar(&opts.PinDir, "pin-dir", pinDir, "pin the BPF-LSM backend's state in the bpffs `DIR`, so that sandboxes outlive a crash of the agent (\"\" to pin nothing)")
	fl.StringVar(&opts.TrustDir, "trust-dir", agent.DefaultTrustDir, "keep the users' trust records (aigate trust) in the root-owned `DIR`, where no sandbox can write (\"\" keeps none: the client's decision applies, and no accepted global policy is compared)")
	fl.BoolVar(&opts.LandlockAudit, "landlock-audit", false, "enable the kernel's audit at start, so that the sandboxes' Landlock refusals (writes to the read-only home, ptrace and signals outside) become events; it costs every process created afterwards (docs/backends.md), so it is off unless asked (sudo aigate setup --landlock-audit)")
	return cmd
}

func runAgent(ctx context.Context, f *cmdutil.Factory, opts *agentOptions) error {
	if f.Env.Euid != 0 {
		return &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: errors.New("the agent needs root: run `sudo aigate agent`, or `sudo aigate setup` to install it as a service")}
	}
	agentFavorDynmods(f)
	choice := policy.BackendChoice(opts.Backend)
	be, err := backend.Open(choice, backend.Options{Logger: f.Log, Warn: func(s string) { f.Log.Warn(s) }, PinPath: opts.PinDir})
	if err != nil {
		return &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: err}
	}
	a, err := agent.New(agent.Config{
		Backend:     be,
		Socket:      opts.Socket,
		Group:       opts.Group,
		Log:         f.Log,
		Build:       cmdutil.Version,
		Commit:      cmdutil.BuildCommit(),
		MetricsAddr: opts.MetricsAddr,
		TrustDir:    opts.TrustDir,
		EnableAudit: opts.LandlockAudit,
	})
	if err != nil {
		if p, ok := be.(enforce.Pinner); ok {
			// Closing would remove the pinned sandboxes: they may be
			// another agent's (this one found the socket taken), or
			// the next one's to adopt.
			return errors.Join(err, p.Release())
		}
		return errors.Join(err, be.Close())
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	stopMetrics, err := cmdutil.ServeMetrics(opts.MetricsAddr, a, f.Log)
	if err != nil {
		return errors.Join(err, a.Close())
	}
	err = a.Serve(ctx)
	stopMetrics()
	if cerr := a.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	f.Log.Info("agent stopped")
	return err
}
