//go:build linux

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/fanotify"
	"github.com/aigate-dev/aigate/internal/lsm"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/resolve"
	"github.com/aigate-dev/aigate/internal/run"
)

// unenforced names the rules of l's policy that backend would leave alone.
func unenforced(l *config.Loaded, backend string) []string {
	if backend != string(policy.BackendFanotify) && backend != string(policy.BackendLSM) {
		return nil
	}
	pol, _ := l.Policy()
	c, err := policy.Compile(pol, l.PolicyEnv())
	if err != nil {
		return nil
	}
	if backend == string(policy.BackendLSM) {
		return lsm.UnenforcedExec(c)
	}
	out := fanotify.UnenforcedExec(c, resolve.DefaultExecDirs(os.Getenv("PATH")))
	out = append(out, fanotify.UnenforcedCopies(c)...)
	return append(out, run.UnsafeUnix(l, pol, backend)...)
}

func addStatusFlags(cmd *cobra.Command, o *statusOptions) {
	cmd.Flags().StringVar(&o.socket, "socket", api.SocketPath(), "the agent's socket `PATH` ($"+api.SocketEnv+" changes the default)")
}

// askAgent asks the agent on socket for its state and the sandboxes the
// caller may see. With no agent, or one that does not answer, it returns
// what status should say instead.
func askAgent(ctx context.Context, socket string) (*StatusAgent, []StatusSandbox, string) {
	c := api.NewClient(socket)
	st, err := c.Status(ctx)
	switch {
	case errors.Is(err, api.ErrNoAgent):
		return nil, nil, noAgent
	case errors.Is(err, os.ErrPermission):
		return nil, nil, err.Error()
	case err != nil:
		return nil, nil, fmt.Sprintf("the agent on %s did not answer: %v", socket, err)
	}
	list, err := c.List(ctx)
	if err != nil {
		return nil, nil, fmt.Sprintf("the agent on %s did not list its sandboxes: %v", socket, err)
	}
	a := &StatusAgent{
		Socket: c.Socket, PID: st.PID, Build: st.Build, Started: st.Started,
		Backend: st.Backend, Pinned: st.Pinned, Unix: st.Unix, Metrics: st.Metrics,
		Landlock: st.Landlock,
	}
	boxes := make([]StatusSandbox, 0, len(list))
	for _, b := range list {
		cmd := b.Command
		if cmd == nil {
			cmd = []string{}
		}
		boxes = append(boxes, StatusSandbox{
			Name: b.Name, Owner: b.Owner, User: userName(b.Owner), Command: cmd, Started: b.Created,
			Backend: b.Backend, Mode: b.Mode, DNS: b.DNS, DNSReason: b.DNSReason,
			Events: b.Events, Procs: b.Procs, Project: b.Project,
		})
	}
	return a, boxes, ""
}

// gitRules are the deny_write rules aigate run adds for the git
// directories in and above the project (run.GitRules), and what it does
// not protect.
func gitRules(l *config.Loaded) ([]StatusRule, []string) {
	return statusRules(run.GitRules(l))
}

// claudeState is which Claude Code state directories aigate run protects
// from here (run.ClaudeConfigDir), or why it refuses to start.
func claudeState(l *config.Loaded, pol *policy.Policy) StatusClaudeState {
	st := StatusClaudeState{Dirs: []string{}, ConfigDir: os.Getenv(claudestate.ConfigDirEnv),
		SecureStorageDir: os.Getenv(claudestate.SecureStorageEnv)}
	if l.Paths.User == nil || l.Paths.User.Home == "" {
		return st
	}
	home := l.Paths.User.Home
	dir, secure, err := run.ClaudeStateDirs(l, pol)
	if err != nil {
		st.Refused = err.Error()
		return st
	}
	for _, d := range claudestate.Dirs(home, dir) {
		st.Dirs = append(st.Dirs, tildeIn(d, home))
	}
	if secure != "" {
		st.Login = tildeIn(filepath.Join(secure, claudestate.Credentials), home)
	}
	return st
}

// tildeIn shows path beneath home as ~/...
func tildeIn(path, home string) string {
	if rest, ok := strings.CutPrefix(path, home+"/"); ok {
		return "~/" + rest
	}
	return path
}

// claudeRules are the deny_write rules aigate run adds from Claude Code's
// settings and auto memory (run.ClaudeRules), and what it cannot protect.
func claudeRules(l *config.Loaded) ([]StatusRule, []string) {
	return statusRules(run.ClaudeRules(l))
}

// outsideRules are the deny_write and deny_read rules aigate run adds for
// the user's sockets, systemd unit directory and terminals
// (run.OutsideRules).
func outsideRules(l *config.Loaded) (write, read []StatusRule) {
	w, r := run.OutsideRules(l)
	write, _ = statusRules(w, nil)
	read, _ = statusRules(r, nil)
	return write, read
}

// envRules are the rules aigate run adds where the user's environment
// ($XDG_CONFIG_HOME, $GIT_CONFIG_GLOBAL, $AWS_SHARED_CREDENTIALS_FILE...)
// moves what the policy's rules protect (run.EnvRules).
func envRules(l *config.Loaded) (read, write, exec, exceptRead []StatusRule) {
	r, w, x, e := run.EnvRules(l)
	read, _ = statusRules(r, nil)
	write, _ = statusRules(w, nil)
	exec, _ = statusRules(x, nil)
	exceptRead, _ = statusRules(e, nil)
	return read, write, exec, exceptRead
}

// followedRule is the pattern of the policy's rule that rule (one of
// envRules) follows, "" for another rule.
func followedRule(r StatusRule) string {
	by, ok := strings.CutPrefix(r.File, "each run: ")
	if !ok {
		return ""
	}
	return run.FollowedRule(by)
}

func statusRules(rules []api.RunRule, notes []string) ([]StatusRule, []string) {
	out := make([]StatusRule, 0, len(rules))
	for _, r := range rules {
		by := "each run: " + r.By
		if len(r.Except) > 0 {
			// The run's own project directory in ~/.claude/projects:
			// say that it stays writable, so the rule is not read as
			// covering it.
			by += "; writable: " + strings.Join(r.Except, ", ")
		}
		out = append(out, StatusRule{Value: r.Pattern, File: by})
	}
	return out, notes
}
