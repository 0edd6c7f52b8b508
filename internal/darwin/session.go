package darwin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aigate-dev/aigate/internal/policy"
)

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

// session is the order of one run, with the pieces that touch the system
// passed in: Run (exec_darwin.go) gives it the real ones, tests fakes, so
// that the order (check the anchor, apply, run the tool, end every process
// of the sandbox user, undo) is tested on Linux.
type session struct {
	r Runner
	// environ is aigate's own environment, from which the tool's is made.
	environ []string
	// start starts the tool with its environment; wait returns its exit
	// status (128+N for signal N) once it has exited. Cancelling ctx
	// asks it to stop.
	start func(ctx context.Context, toolEnv []string) (wait func() (int, error), err error)
	// startLog starts the pf log reader; nil means no events. stop ends
	// it and waits for it.
	startLog func(ctx context.Context) (stop func(), err error)
	// anchorEvery is how often the anchor call is checked while the tool
	// runs (AnchorCheckInterval).
	anchorEvery time.Duration
}

func (s session) run(ctx context.Context, c *policy.Compiled, env Env) (res Outcome, err error) {
	r := s.r
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
		if chk := CheckAnchorFirst(string(out)); !chk.OK {
			warn("pf: the anchor is " + chk.Detail + "; fix: " + chk.Fix)
		}
	}
	applied, err := Apply(ctx, r, c, env)
	if err != nil {
		return Outcome{}, err
	}
	// res is a named result so that the undo's failure reaches the caller.
	// Finish ends every process of the sandbox user (a dev server or a
	// nohup job the tool left) before pf and the entries are released.
	// Deferred first, it runs last, after the goroutines below stopped.
	defer func() {
		if rerr := Finish(context.WithoutCancel(ctx), r, env.User, env.StateFile); rerr != nil {
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
	if s.startLog != nil && needsPF(c.Net) {
		if stopLog, err := s.startLog(runCtx); err == nil {
			defer stopLog()
		} else {
			warn("no network events: " + err.Error())
		}
	}
	// toolCtx ends the tool (SIGTERM, then SIGKILL) when aigate is asked
	// to stop or when pf stops calling the anchor.
	toolCtx, endTool := context.WithCancel(ctx)
	defer endTool()
	if needsPF(c.Net) {
		watched := make(chan struct{})
		defer func() { stop(); <-watched }()
		go func() {
			defer close(watched)
			WatchAnchor(runCtx, r, s.anchorEvery, func(why string) {
				warn("pf no longer applies the sandbox's network rules (" + why + "; did a VPN reload the pf ruleset?): ending the session. Run `sudo aigate setup` to restore the anchor, then run again")
				endTool()
			})
		}()
	}
	wait, err := s.start(toolCtx, ToolEnv(s.environ, env.User, GitTop(env.FS, env.ProjectRoot)))
	if err != nil {
		return res, err
	}
	res.ExitCode, err = wait()
	return res, err
}

var errNoCommand = errors.New("run: no command given")
