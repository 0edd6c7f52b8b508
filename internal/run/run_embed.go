//go:build linux

package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// embeddedAgent is the agent `aigate run` starts inside itself when none
// runs: the same agent as `aigate agent`, serving the same socket (so that
// `aigate watch`, `aigate status` and the metrics work from another
// terminal), for as long as the run lasts.
type embeddedAgent struct {
	a           *agent.Agent
	served      chan error
	cancel      context.CancelFunc
	stopMetrics func()
}

// startEmbedded opens the backend and starts the agent on opts.Socket.
// api.ErrAgentRunning means another agent holds the socket: use that one.
func startEmbedded(f *cmdutil.Factory, opts *runOptions, choice policy.BackendChoice) (*embeddedAgent, error) {
	// What a crashed run left is removed here, to say so on the terminal
	// as a warning (agent.New would only log it), and before the backend
	// opens: a killed run's sandbox holds the network programs kept for
	// embedded runs until its cgroup is gone (loader.NetOptions.Keep).
	notes, err := sandbox.Sweep(parentOr(opts.parent))
	if err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: fmt.Errorf("refusing to run %s: %w", opts.Args[0], err)}
	}
	for _, n := range notes {
		f.Warnf("%s", n)
	}
	open := opts.openBackend
	if open == nil {
		open = backend.Open
	}
	be, err := open(choice, backend.Options{
		Logger: f.Log,
		Warn:   func(msg string) { noticeOnce(f, msg) }, // the fallback explains the machine, not this run
		// Pinned, so that killing this process leaves the sandbox
		// enforced by the kernel rather than running on unconfined.
		RunPin: parentOr(opts.parent),
	})
	if err != nil {
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitNoEnforcement, Err: fmt.Errorf("refusing to run %s without enforcement: %w", opts.Args[0], err)}
	}
	// The pins of a killed run are removed once its sandboxes are.
	if err := backend.ReapRunPins(parentOr(opts.parent), func(pid int) bool { return sandbox.Left(parentOr(opts.parent), pid) }); err != nil {
		f.Log.Warn("pins of a killed run left in place", zap.Error(err))
	}
	// The agent's log (socket replaced, no aigate group) is for `aigate
	// agent`; on a run it would interleave with the command's output.
	log := f.Log
	if !log.Core().Enabled(zapcore.DebugLevel) {
		log = log.WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel))
	}
	a, err := agent.New(agent.Config{
		Backend: be,
		Socket:  opts.Socket,
		Parent:  opts.parent,
		// The policy last accepted is kept where the service agent keeps
		// it: a loosened ~/.aigate/config.yaml is refused (or, on a
		// terminal, offered for acceptance) in both modes alike.
		TrustDir: opts.TrustDir,
		Embedded: true,
		Log:      log,
		Build:    cmdutil.Version,
		Commit:   cmdutil.BuildCommit(),
	})
	if err != nil {
		berr := be.Close()
		if errors.Is(err, api.ErrAgentRunning) {
			return nil, errors.Join(err, berr)
		}
		return nil, &cmdutil.StatusError{Code: cmdutil.ExitSandbox, Err: errors.Join(fmt.Errorf("refusing to run %s: %w", opts.Args[0], err), berr)}
	}
	stopMetrics, err := cmdutil.ServeMetrics(opts.MetricsAddr, a, f.Log)
	if err != nil {
		// Metrics are a convenience of the embedded agent (a service
		// agent may hold the port, or a second run): no reason to refuse.
		f.Log.Debug("embedded agent without metrics", zap.Error(err))
		stopMetrics = func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &embeddedAgent{a: a, served: make(chan error, 1), cancel: cancel, stopMetrics: stopMetrics}
	go func() { e.served <- a.Serve(ctx) }()
	f.Log.Debug("started the agent in this process", zap.String("socket", a.Socket()))
	return e, nil
}

// finish stops the embedded agent once every sandbox it serves has ended:
// other runs (another terminal, another user) may have found its socket
// and created theirs through it, and their commands must not die because
// this one finished. SIGINT, SIGTERM or SIGHUP stops waiting and ends them.
func (e *embeddedAgent) finish(f *cmdutil.Factory, sigs <-chan os.Signal) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- e.a.Drain(ctx) }()
	notice := time.After(500 * time.Millisecond)
	for {
		select {
		case err := <-drained:
			e.stop(f, err)
			return
		case s := <-sigs:
			if s == syscall.SIGQUIT {
				continue
			}
			cancel()
		case <-notice:
			if e.a.SandboxCount() > 0 {
				f.Warnf("other sandboxes run through the agent in this process (aigate status lists them); waiting for them to end (Ctrl-C ends them now)")
			}
		}
	}
}

// close stops the embedded agent at once, ending every sandbox.
func (e *embeddedAgent) close(f *cmdutil.Factory) { e.stop(f, e.a.Close()) }

func (e *embeddedAgent) stop(f *cmdutil.Factory, err error) {
	e.cancel()
	if serr := <-e.served; serr != nil {
		err = errors.Join(err, serr)
	}
	e.stopMetrics()
	if err != nil {
		f.Warnf("stop the agent: %v", err)
	}
}

func parentOr(p string) string {
	if p == "" {
		return sandbox.DefaultParent
	}
	return p
}
