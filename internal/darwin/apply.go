package darwin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"time"

	"github.com/aigate-dev/aigate/internal/policy"
)

// Resolver turns allowed domain names into addresses; *net.Resolver
// satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Env is what Apply needs to know about the machine and the session.
type Env struct {
	User        SandboxUser
	ProjectRoot string
	Home        string
	StateFile   string // Machine.StateFile: root-owned, one per machine
	FS          fs.FS  // rooted at "/"
	ExecDirs    []string
	MaxEntries  int
	Resolver    Resolver
	// PID identifies this session in the state file. Alive reports whether
	// the process that wrote a leftover state file still runs; nil means
	// "assume it does", the safe answer.
	PID   int
	Alive func(pid int) bool
	// Warn receives Run's warnings (rules macOS cannot enforce, missing
	// events) as soon as they are known, before the tool starts; nil drops
	// them.
	Warn func(string)
}

// Step is one change in an apply plan.
type Step struct {
	What string
	Do   Command
	Undo []Command
	// enable marks the pfctl -E step, whose undo needs the token the
	// command prints.
	enable bool
}

// Applied describes a session's applied policy.
type Applied struct {
	Expansion *Expansion
	Anchor    Anchor
	Steps     []Step
	Warnings  []string
	refresher *Refresher
}

// Refresher returns the session's domain refresher, or nil when the policy
// allows no domains (or allows all traffic).
func (a *Applied) Refresher() *Refresher { return a.refresher }

// ErrBusy means another live session holds the state file.
var ErrBusy = errors.New("another aigate session is running on this machine")

// Plan returns the ordered changes for compiled policy c: deny entries first
// (so there is never a moment in which the project is shared but a secret in
// it is not yet denied), then the project allow entries, then pf.
func Plan(c *policy.Compiled, exp *Expansion, env Env, anchor Anchor) ([]Step, []string) {
	var steps []Step
	var warns []string
	user := env.User.Name
	if c.Mode == policy.ModeAudit {
		warns = append(warns, "audit mode: file rules are not applied on macOS, because an ACL can only refuse, not report")
	} else {
		for _, t := range exp.Targets {
			a, ok := DenyACE(user, t)
			if !ok {
				warns = append(warns, fmt.Sprintf("deny_%s %s: on the read-only system volume, no ACL can be added; not enforced", t.Access, t.Path))
				continue
			}
			steps = append(steps, Step{
				What: fmt.Sprintf("deny %s %s", t.Access, t.Path),
				Do:   a.AddCommand(),
				Undo: []Command{a.RemoveCommand()},
			})
		}
	}
	for _, a := range ProjectACEs(user, env.ProjectRoot, env.Home) {
		steps = append(steps, Step{
			What: "share " + a.Path,
			Do:   a.AddCommand(),
			Undo: []Command{a.RemoveCommand()},
		})
	}
	if needsPF(c.Net) {
		steps = append(steps,
			Step{What: "enable pf", Do: EnableCommand(), enable: true},
			Step{What: "load pf anchor " + AnchorName, Do: LoadAnchorCommand(anchor.Text), Undo: FlushAnchorCommands()},
		)
	}
	return steps, warns
}

func needsPF(n policy.NetPolicy) bool {
	return n.Mode != policy.NetAllow || len(n.Deny) > 0
}

// Apply applies c for one session. Each change is recorded in the state file
// before it is made; if any step fails, everything done so far is undone and
// the error names the step. A state file left by a dead session is undone
// first.
func Apply(ctx context.Context, r Runner, c *policy.Compiled, env Env) (*Applied, error) {
	if env.User.Name == "" || env.StateFile == "" || env.FS == nil || env.ProjectRoot == "" {
		return nil, errors.New("apply: env needs User, StateFile, FS and ProjectRoot")
	}
	if err := recoverLeftover(ctx, r, env); err != nil {
		return nil, err
	}
	exp, err := Expand(env.FS, c, ExpandOptions{
		ProjectRoot: env.ProjectRoot, Home: env.Home, ExecDirs: env.ExecDirs, MaxEntries: env.MaxEntries,
	})
	if err != nil {
		return nil, fmt.Errorf("expand file rules: %w", err)
	}
	a := &Applied{Expansion: exp}
	if exp.Truncated {
		a.Warnings = append(a.Warnings, fmt.Sprintf("name rules: stopped after %d entries (first unread directory %s); files beyond were not searched", exp.Visited, exp.SkippedAt))
	}
	var resolved map[uint16][]netip.Addr
	if c.Net.Mode != policy.NetAllow {
		f := newRefresher(r, env.Resolver, c.Net)
		for _, d := range c.Net.Domains {
			if d.Wildcard {
				a.Warnings = append(a.Warnings, fmt.Sprintf("allow_net *.%s: pf matches addresses, not names, and a wildcard cannot be resolved ahead; not reachable on macOS (list the names you need)", d.Name))
			}
		}
		var warns []string
		resolved, warns = f.resolve(ctx)
		a.Warnings = append(a.Warnings, warns...)
		f.merge(resolved)
		if len(f.domains) > 0 {
			a.refresher = f
		}
	}
	a.Anchor = BuildAnchor(AnchorSpec{User: env.User.Name, Net: c.Net, Audit: c.Mode == policy.ModeAudit, Resolved: resolved})
	steps, warns := Plan(c, exp, env, a.Anchor)
	a.Steps = steps
	a.Warnings = append(a.Warnings, warns...)

	st := &State{Version: stateVersion, PID: env.PID, Started: time.Now().UTC(), User: env.User.Name}
	if err := WriteState(env.StateFile, st); err != nil {
		return nil, err
	}
	for _, s := range steps {
		st.Records = append(st.Records, Record{What: s.What, Undo: s.Undo})
		if err := WriteState(env.StateFile, st); err != nil {
			return nil, rollback(ctx, r, env.StateFile, err)
		}
		out, err := s.Do.run(ctx, r)
		if err != nil {
			return nil, rollback(ctx, r, env.StateFile, runError(s.What, s.Do, out, err))
		}
		if s.enable {
			tok, err := ParseEnableToken(string(out))
			if err != nil {
				// pf is on; without a token we cannot release our
				// reference, which leaves pf enabled, not open.
				a.Warnings = append(a.Warnings, err.Error())
				continue
			}
			st.Records[len(st.Records)-1].Undo = []Command{ReleaseCommand(tok)}
			if err := WriteState(env.StateFile, st); err != nil {
				return nil, rollback(ctx, r, env.StateFile, err)
			}
		}
	}
	return a, nil
}

func rollback(ctx context.Context, r Runner, statePath string, cause error) error {
	// Undo even when ctx was cancelled (Ctrl-C during apply): leaving deny
	// entries or a pf anchor behind is worse than a slower exit.
	if err := Revert(context.WithoutCancel(ctx), r, statePath); err != nil {
		return fmt.Errorf("%w; undoing the changes also failed: %v (run `sudo aigate reset`)", cause, err)
	}
	return cause
}

func recoverLeftover(ctx context.Context, r Runner, env Env) error {
	st, err := ReadState(env.StateFile)
	if err != nil || st == nil {
		return err
	}
	if st.PID != env.PID && (env.Alive == nil || env.Alive(st.PID)) {
		return fmt.Errorf("%w (pid %d, state %s): wait for it to end; if it is gone, run `sudo aigate reset`", ErrBusy, st.PID, env.StateFile)
	}
	if err := Revert(ctx, r, env.StateFile); err != nil {
		return fmt.Errorf("undo the changes of a session that did not clean up: %w", err)
	}
	return nil
}

// Revert undoes every change recorded in the state file, newest first. A
// change whose undo fails stays recorded (so `aigate reset` can retry) and
// the others are still undone; the file is removed once it is empty.
// Reverting with no state file does nothing, so Revert is idempotent.
func Revert(ctx context.Context, r Runner, statePath string) error {
	st, err := ReadState(statePath)
	if err != nil || st == nil {
		return err
	}
	var errs []error
	for i := len(st.Records) - 1; i >= 0; i-- {
		rec := st.Records[i]
		var failed []Command
		for _, u := range rec.Undo {
			out, err := u.run(ctx, r)
			if err != nil && !alreadyUndone(out, err) {
				errs = append(errs, runError("undo "+rec.What, u, out, err))
				failed = append(failed, u)
			}
		}
		if len(failed) > 0 {
			st.Records[i].Undo = failed
		} else {
			st.Records = append(st.Records[:i], st.Records[i+1:]...)
		}
		if err := WriteState(statePath, st); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	if len(st.Records) == 0 {
		if err := RemoveState(statePath); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// goneMarkers are the messages with which chmod and pfctl report that
// there is nothing to remove: a record written just before a crash, a file
// deleted during the session, or a second reset. Treating them as success is
// what makes Revert finish instead of retrying forever.
var goneMarkers = []string{
	"No such file or directory",
	"No ACL present",
	"No matching",
	"not found",
	"does not exist",
	"eDSRecordNotFound", // dscl -delete of an account already gone
	"Invalid argument",  // pfctl -X with a token that was already released
}

func alreadyUndone(out []byte, err error) bool {
	s := string(out) + " " + err.Error()
	for _, m := range goneMarkers {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}
