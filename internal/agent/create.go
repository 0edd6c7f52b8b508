//go:build linux

package agent

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/metrics"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/resolve"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// create builds the caller's policy from their config files, with the same
// parser, merge and compiler as `aigate run`, and creates the sandbox.
//
// The agent compiles rather than accepting a compiled policy: the client's
// bytes then go through exactly the validation every config file gets (and
// its file:line errors), and nothing but the documented YAML can reach the
// backend's maps. Who the sandbox belongs to comes from SO_PEERCRED only.
func (a *Agent) create(ctx context.Context, p api.Peer, req *api.CreateRequest) (*box, []string, *api.Error) {
	owner := p.UID
	if req.Owner != nil && *req.Owner != p.UID {
		if !p.Root() {
			return nil, nil, &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("only root may create a sandbox for another user (you are uid %d)", p.UID)}
		}
		owner = *req.Owner
	}
	// The caller's waiting helper, checked now and moved in while the
	// backend builds the sandbox (Config.Enter): the create's answer then
	// means placed, one round trip less, and the migration's wait for an
	// RCU grace period is hidden beside the backend's work. Nothing of the
	// command runs before the answer: the helper waits for its go-ahead,
	// which the client gives only after it.
	var pl *placement
	if req.Place != nil {
		var e *api.Error
		if pl, e = a.checkPlace(p, req.Place.PID); e != nil {
			return nil, nil, e
		}
		defer pl.close()
	}
	if e := checkPaths(p, req); e != nil {
		return nil, nil, e
	}
	// For every peer, root too: / or /proc as the project would have the
	// backend walk and mark the whole machine (or fail half-way on
	// /proc/PID/net), and the sandbox write all of it.
	if err := config.CheckProjectRoot(req.ProjectRoot, req.Home); err != nil {
		return nil, nil, &api.Error{Code: api.CodeForbidden, Message: err.Error()}
	}
	if n := a.countOwned(owner); n >= a.cfg.MaxSandboxesPerUser {
		return nil, nil, &api.Error{Code: api.CodeLimit, Message: fmt.Sprintf("uid %d already has %d sandboxes, the limit; end one (aigate status lists them)", owner, n)}
	}

	// With trust records of its own, the agent decides the project file's
	// trust from them, not from the client: the client read its decision
	// from ~/.aigate, which a sandbox may have forged.
	trust, e := a.projectTrust(owner, req)
	if e != nil {
		return nil, nil, e
	}
	// The global policy: refused when it loosens what the owner last
	// accepted from outside a sandbox (policyrec.go).
	if e := a.checkPolicy(owner, req); e != nil {
		return nil, nil, e
	}
	r := *req
	r.Trust = trust
	compiled, warnings, err := compile(&r)
	if err != nil {
		return nil, nil, &api.Error{Code: api.CodePolicy, Message: err.Error()}
	}
	mode := compiled.Mode
	if req.Mode != "" {
		mode = req.Mode
	}
	var enter func(move func(pid int) error) error
	var placeErr *api.Error // why the move was refused
	if pl != nil {
		enter = func(move func(pid int) error) error {
			if placeErr = pl.move(move); placeErr != nil {
				return placeErr
			}
			return nil
		}
	}
	sb, err := sandbox.Create(ctx, sandbox.Config{
		Backend: a.be,
		Policy:  compiled,
		Mode:    mode,
		Parent:  a.cfg.Parent,
		// The fanotify backend walks these for name rules: the owner's,
		// not the agent's.
		Home:        req.Home,
		ProjectRoot: req.ProjectRoot,
		ExecDirs:    resolve.DefaultExecDirs(req.Path),
		// run checked them, and its exec helper checks them again
		// before the command starts.
		LandlockCovers: req.LandlockCovers,
		// The agent places only the owner's processes (place.go).
		UID:   owner,
		Enter: enter,
	})
	if err != nil {
		if placeErr != nil {
			return nil, nil, placeErr
		}
		return nil, nil, &api.Error{Code: api.CodeSandbox, Message: err.Error()}
	}
	warnings = append(warnings, sb.Warnings...)
	b := &box{
		sb:       sb,
		compiled: compiled,
		rules:    metrics.RuleCounts(compiled),
		wd:       -1,
		gone:     make(chan struct{}),
		landlock: newBoxLandlock(req.Landlock, a.be.Name()),
		own:      newClaudeOwn(*req, time.Now()),
		info: api.SandboxInfo{
			Name:       sb.Info.Name,
			ID:         sb.Info.ID,
			Owner:      owner,
			Mode:       sb.Info.Mode,
			Backend:    a.be.Name(),
			Created:    time.Now(),
			Rules:      len(compiled.Rules),
			Userns:     compiled.Userns,
			IOUring:    compiled.IOUring,
			UsernsHook: refusesUserns(a.be),
			Project:    req.ProjectRoot,
			Command:    req.Command,
		},
	}
	// Before register: until the create is answered nothing of the
	// command runs, and a port that cannot be guarded fails the create.
	w, err := a.guardIDE(b, req)
	if err != nil {
		a.ide.remove(b)
		_ = sb.Close()
		return nil, nil, &api.Error{Code: api.CodeSandbox, Message: err.Error()}
	}
	if w != "" {
		warnings = append(warnings, w)
	}
	if err := a.register(b); err != nil {
		a.ide.remove(b)
		_ = sb.Close()
		return nil, nil, &api.Error{Code: api.CodeSandbox, Message: fmt.Sprintf("watch sandbox %s: %v", b.info.Name, err)}
	}
	a.keepRecord(b, req) // with a pinning backend, for the next agent (adopt.go)
	if w := a.guardClaudeJSON(b, req); w != "" {
		warnings = append(warnings, w)
	}
	a.guardAfterRun(b, &r)
	if pl != nil {
		a.placed(b, pl.pid)
	}
	return b, warnings, nil
}

func (a *Agent) countOwned(uid uint32) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, b := range a.boxes {
		if b.info.Owner == uid {
			n++
		}
	}
	return n
}

// compile parses, merges and compiles the request's config files as
// config.Load and Loaded.Policy do for a local run.
func compile(req *api.CreateRequest) (*policy.Compiled, []string, error) {
	paths := &config.Paths{
		User:        &config.User{Home: req.Home},
		ProjectRoot: req.ProjectRoot,
	}
	l := &config.Loaded{Paths: paths}
	var err error
	if req.Global != nil {
		paths.Global = req.Global.Path
		if l.Global, err = policy.Parse(req.Global.Path, req.Global.Data); err != nil {
			return nil, nil, err
		}
	}
	if req.Project != nil {
		paths.Project = req.Project.Path
		l.ProjectData = req.Project.Data
		if l.Project, err = policy.Parse(req.Project.Path, req.Project.Data); err != nil {
			return nil, nil, err
		}
		switch req.Trust {
		case "trusted":
			l.Trust = config.Trusted
		case "changed":
			l.Trust = config.Changed
		default:
			l.Trust = config.Untrusted
		}
	}
	pol, warns := l.Policy()
	for _, r := range req.DenyWrite {
		if err := policy.CheckPattern(r.Pattern); err != nil {
			return nil, nil, fmt.Errorf("deny_write for this run (%s): %w", r.By, err)
		}
		pol.DenyWrite = append(pol.DenyWrite, policy.PathRule{Pattern: r.Pattern, Source: policy.Source{File: r.By}, Except: r.Except})
	}
	for _, r := range req.DenyRead {
		if err := policy.CheckPattern(r.Pattern); err != nil {
			return nil, nil, fmt.Errorf("deny_read for this run (%s): %w", r.By, err)
		}
		pol.DenyRead = append(pol.DenyRead, policy.PathRule{Pattern: r.Pattern, Source: policy.Source{File: r.By}})
	}
	for _, r := range req.DenyExec {
		if err := policy.CheckPattern(r.Pattern); err != nil {
			return nil, nil, fmt.Errorf("deny_exec for this run (%s): %w", r.By, err)
		}
		pol.DenyExec = append(pol.DenyExec, policy.PathRule{Pattern: r.Pattern, Source: policy.Source{File: r.By}})
	}
	for _, r := range req.ExceptRead {
		// Anchored paths only: a name or glob here would except it
		// everywhere, which is no exception a run makes.
		if err := policy.CheckPattern(r.Pattern); err != nil {
			return nil, nil, fmt.Errorf("except_read for this run (%s): %w", r.By, err)
		}
		if !runException(r.Pattern) {
			return nil, nil, fmt.Errorf("except_read for this run (%s): %q is neither a path beneath / nor beneath the home", r.By, r.Pattern)
		}
		pol.ExceptRead = append(pol.ExceptRead, policy.PathRule{Pattern: r.Pattern, Source: policy.Source{File: r.By}})
	}
	c, err := policy.Compile(pol, l.PolicyEnv())
	if err != nil {
		return nil, nil, err
	}
	var out []string
	for _, w := range warns {
		out = append(out, strings.TrimSpace(fmt.Sprint(w)))
	}
	return c, out, nil
}

// runException reports whether p may be an except_read entry of a run
// (api.CreateRequest.ExceptRead): a path strictly beneath / or the home,
// so that it never excepts the whole machine or home from the name rules.
func runException(p string) bool {
	rest, ok := strings.CutPrefix(p, "~/")
	if !ok {
		rest, ok = strings.CutPrefix(p, "/")
	}
	return ok && path.Clean("/"+rest) != "/"
}
