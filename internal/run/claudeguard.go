//go:build linux

package run

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
)

// makeToolDirs makes the tool-state directories aigate creates when
// missing (landlock.DefaultCreate) before the sandbox exists, as the
// user: among them are the protected ones of ~/.claude (plugins/cache,
// skills, ...), which the LSM backend would refuse to the command's own
// start inside, and which the fanotify backend watches only if they exist
// when it marks the home. Best effort, as the command's start inside is.
// Only as the user (aigate run as the user, or under sudo acting as the
// user): directories root made would be root's, and claude could not
// write them; the command's start inside still makes them then.
func makeToolDirs(home, configDir string, uid int, u *config.User) {
	if home == "" || (os.Geteuid() != uid && (u == nil || !u.Sudo)) {
		return
	}
	create := landlock.DefaultCreate
	if configDir != "" {
		// The same directories in the state $CLAUDE_CONFIG_DIR moved
		// (claudeConfigDir keeps it beneath the home).
		create = movedClaudeDir(landlock.Options{Home: home, Create: create}, configDir).Create
	}
	_ = u.Do(func() error {
		for _, d := range create {
			_ = landlock.CreateMissing(landlock.Options{Home: home, Create: []string{d}})
		}
		return nil
	})
}

// claudeRunRules are the deny_write rules of this run alone (package
// claudestate): the scripts Claude Code's settings name and the projects'
// auto memory, read as the user before the sandbox exists, without those
// a deny_write rule already covers or that are no valid pattern. Claude
// Code inside keeps its auto memory in the sandboxes' own directory
// (claudeMemoryEnv), so the real one can be read-only. It makes the
// missing auto-memory directories of the projects first (the run's own
// and those in ~/.claude/projects), as makeToolDirs does the others: the
// fanotify backend watches only what exists at start.
func claudeRunRules(p *runPlan) ([]api.RunRule, []string) {
	mkdir := os.Geteuid() == p.id.uid || (p.loaded.Paths.User != nil && p.loaded.Paths.User.Sudo)
	return claudeRules(p.loaded, p.pol, p.compiled, p.id.home, p.claudeDir, p.claudeSecure, p.userMemory, p.userAgentMemory, mkdir)
}

// ClaudeRules are the rules claudeRunRules adds to a run from here, and
// what it cannot protect, for aigate status (which makes no directory).
func ClaudeRules(l *config.Loaded) ([]api.RunRule, []string) {
	c, ok := statusPolicy(l)
	if !ok {
		return nil, nil
	}
	pol, _ := l.Policy()
	home := l.Paths.User.Home
	dir, secure, _ := ClaudeStateDirs(l, pol)
	return claudeRules(l, pol, c, home, dir, secure, os.Getenv(claudestate.MemoryOverrideEnv),
		os.Getenv(claudestate.RemoteMemoryEnv), false)
}

// ClaudeStateDirs are the Claude Code state directory that
// $CLAUDE_CONFIG_DIR of this environment names ("" when none or
// ~/.claude) and the directory $CLAUDE_SECURESTORAGE_CONFIG_DIR moves its
// login to ("" when none or one of those), as run would take them
// (claudeConfigDir, claudeSecureDir), with why run refuses one, for status
// and doctor.
func ClaudeStateDirs(l *config.Loaded, pol *policy.Policy) (dir, secure string, err error) {
	if l.Paths.User == nil {
		return "", "", nil
	}
	return claudeStateDirs(pol, l.Paths.User.Home, l.Paths, os.Getenv)
}

func claudeRules(l *config.Loaded, pol *policy.Policy, compiled *policy.Compiled, home, configDir, secureDir, envMemory, envAgentMemory string, mkdir bool) ([]api.RunRule, []string) {
	if home == "" {
		return nil, nil
	}
	paths := l.Paths
	var res claudestate.Result
	_ = paths.User.Do(func() error {
		o := claudestate.Options{Home: home, ProjectRoot: paths.ProjectRoot, WorkDir: paths.WorkDir,
			Managed: claudestate.ManagedSettings, EnvMemory: envMemory, EnvRemoteMemory: envAgentMemory, ConfigDir: configDir}
		res = claudestate.Scan(o)
		// What the policy keeps read-only in ~/.claude, again in the
		// moved state directory (first: its rules name the policy's).
		res.Entries = append(claudestate.Moved(denyWritePatterns(pol), home, configDir), res.Entries...)
		// The login moved on its own, kept as the policy keeps ~/.claude's
		// (a user who lets the sandbox log in lets it there too).
		if e, ok := claudestate.SecureStorage(home, secureDir); ok && loginProtected(compiled, home) {
			res.Entries = append([]claudestate.Entry{e}, res.Entries...)
		}
		if mkdir {
			// Claude Code makes a project's memory directory at every
			// start there; made now, it exists when the backend marks it.
			for _, e := range res.Entries {
				if strings.HasPrefix(e.By, "auto memory") {
					_ = os.MkdirAll(expandHome(e.Pattern, home), 0o700)
				}
			}
		}
		return nil
	})
	entries := make([]api.RunRule, 0, len(res.Entries))
	for _, e := range res.Entries {
		entries = append(entries, api.RunRule{Pattern: e.Pattern, By: e.By, Except: e.Except})
	}
	rules, notes := newRunRules(compiled, home, entries)
	return rules, append(res.Uncovered, notes...)
}

// loginProtected says whether the policy keeps ~/.claude/.credentials.json
// read-only (a default).
func loginProtected(compiled *policy.Compiled, home string) bool {
	if compiled == nil {
		return false
	}
	_, ok := compiled.Write.Match(filepath.Join(home, ".claude", claudestate.Credentials))
	return ok
}

// denyWritePatterns are pol's deny_write patterns (nil without a policy).
func denyWritePatterns(pol *policy.Policy) []string {
	if pol == nil {
		return nil
	}
	out := make([]string, 0, len(pol.DenyWrite))
	for _, r := range pol.DenyWrite {
		out = append(out, r.Pattern)
	}
	return out
}

// newRunRules keeps of entries ("~/..." or absolute patterns) those no
// deny_write rule of the policy covers yet and that are valid patterns;
// the notes name the invalid ones.
func newRunRules(compiled *policy.Compiled, home string, entries []api.RunRule) ([]api.RunRule, []string) {
	var rules []api.RunRule
	var notes []string
	for _, e := range entries {
		abs := strings.TrimSuffix(e.Pattern, "/")
		if rest, ok := strings.CutPrefix(abs, "~/"); ok {
			abs = filepath.Join(home, rest)
		}
		if _, ok := compiled.Write.Match(abs); ok {
			continue
		}
		if err := policy.CheckPattern(e.Pattern); err != nil {
			notes = append(notes, fmt.Sprintf("%s (%s): %v", e.Pattern, e.By, err))
			continue
		}
		rules = append(rules, e)
	}
	return rules, notes
}

// claudeMemoryEnv points Claude Code's auto memory inside the sandbox at
// the sandboxes' own directory for this project
// (claudestate.SandboxMemory), seeded as the user with the real memory's
// notes, by setting claudestate.MemoryOverrideEnv in env (replacing the
// user's value, whose directory claudeRunRules protects). The real
// memory, loaded by every later claude outside, is read-only for the run
// (claudeRunRules): claude inside never writes or makes it then. Without
// a home or a project, or when the directory cannot be made, env is
// returned as it is, with why. The directory is made and seeded only
// as the user (as makeToolDirs does); else claude inside makes it.
func claudeMemoryEnv(env []string, home, configDir string, uid int, paths *config.Paths) ([]string, error) {
	o := claudestate.Options{Home: home, ProjectRoot: paths.ProjectRoot, WorkDir: paths.WorkDir, ConfigDir: configDir}
	own := o.OwnMemory()
	if own == "" {
		return env, nil
	}
	dir := claudestate.SandboxMemory(home, own)
	asUser := os.Geteuid() == uid || (paths.User != nil && paths.User.Sudo)
	if err := paths.User.Do(func() error {
		if !asUser {
			return nil
		}
		_, err := claudestate.SeedMemory(own, dir)
		return err
	}); err != nil {
		return env, err
	}
	return setEnv(env, claudestate.MemoryOverrideEnv, dir), nil
}

// claudeAgentMemoryEnv points the memory of Claude Code's subagents
// inside the sandbox at the sandboxes' own directory
// (claudestate.SandboxAgentMemoryDir), seeded as the user with the real
// memory's notes, by setting claudestate.RemoteMemoryEnv in env (replacing
// the user's value, whose directories claudeRunRules protects). The real
// memory, ~/.claude/agent-memory, which a subagent outside loads into its
// prompt, is a default deny_write: a subagent inside that was not pointed
// elsewhere would fail to save its notes. Without a home, or when the
// directory is no directory, env is returned as it is, with why; as
// claudeMemoryEnv, it seeds only as the user.
func claudeAgentMemoryEnv(env []string, home, configDir string, uid int, u *config.User) ([]string, error) {
	if home == "" {
		return env, nil
	}
	dir := filepath.Join(home, claudestate.SandboxAgentMemoryDir)
	asUser := os.Geteuid() == uid || (u != nil && u.Sudo)
	if err := u.Do(func() error {
		if !asUser {
			return nil
		}
		real := filepath.Join(home, ".claude", "agent-memory")
		if configDir != "" {
			real = filepath.Join(configDir, "agent-memory") // the claude of this shell's
		}
		_, err := claudestate.SeedAgentMemory(real, dir)
		return err
	}); err != nil {
		return env, err
	}
	return setEnv(env, claudestate.RemoteMemoryEnv, dir), nil
}

// setEnv is env with name set to val, once, in place of its values.
func setEnv(env []string, name, val string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+val)
}

// envValue is name's value in env ("" when unset).
func envValue(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}

// describeRunRules is run's line about the scripts: the auto memory,
// protected in every run, is listed by status only.
func describeRunRules(rules []api.RunRule) string {
	var named []string
	for _, r := range rules {
		if !strings.HasPrefix(r.By, "auto memory") && !strings.HasPrefix(r.By, claudestate.MovedBy) {
			named = append(named, fmt.Sprintf("%s (%s)", r.Pattern, r.By))
		}
	}
	if len(named) == 0 {
		return ""
	}
	return "read-only for this run, because a claude outside the sandbox runs or reads them: " + strings.Join(named, ", ")
}

// cloneGuard holds the fingerprints, from before the sandbox, of the
// marketplace clones that installed plugins come from
// (claudestate.InstalledClones): a clone the sandbox changed would reach
// a claude outside at the plugin's next update, so the agent moves it
// aside once the sandbox is gone (claudestate.CheckClones, through
// api.AfterRun) and run says so. The clones cannot be
// read-only inside instead: Claude Code refreshes them at every start, by
// renaming one to .bak while it downloads it again.
type cloneGuard struct {
	user   *config.User
	home   string
	clones []claudestate.Clone
	sums   []string // "" where a clone could not be summed at the start
}

// guardClones sums the clones before the sandbox exists, as the user; nil
// when there are none or run cannot act as the user (root for another
// user without sudo: it would make root's directories).
func guardClones(home string, uid int, u *config.User) *cloneGuard {
	if home == "" || (os.Geteuid() != uid && (u == nil || !u.Sudo)) {
		return nil
	}
	g := &cloneGuard{user: u, home: home}
	_ = u.Do(func() error {
		g.clones = claudestate.InstalledClones(home)
		for _, c := range g.clones {
			sum, _ := claudestate.Fingerprint(c.Dir)
			g.sums = append(g.sums, sum)
		}
		return nil
	})
	if len(g.clones) == 0 {
		return nil
	}
	return g
}

// request is what the agent checks once the sandbox ended
// (api.AfterRun.Clones): it does that also after a kill -9 of run.
func (g *cloneGuard) request() []api.ClaudeClone {
	if g == nil {
		return nil
	}
	out := make([]api.ClaudeClone, 0, len(g.clones))
	for i, c := range g.clones {
		out = append(out, api.ClaudeClone{Marketplace: c.Marketplace, Dir: c.Dir, Plugins: c.Plugins, Sum: g.sums[i]})
	}
	return out
}

// tildeHome shows path beneath home as ~/...
func tildeHome(path, home string) string {
	if rest, ok := strings.CutPrefix(path, home+"/"); ok {
		return "~/" + rest
	}
	return path
}

// describeClaudeDir is run's line about the state directory
// $CLAUDE_CONFIG_DIR moved ("" when none): protected as ~/.claude is.
func describeClaudeDir(dir, home string) string {
	if dir == "" {
		return ""
	}
	return fmt.Sprintf("Claude Code's state in $%s (%s) is kept as ~/.claude is: its settings, hooks, plugins, memory and credentials are read-only, what the sandbox changes in its .claude.json MCP servers is put back after the run",
		claudestate.ConfigDirEnv, tildeHome(dir, home))
}
