//go:build linux

package run

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
)

// LandlockEnv set to "optional" lets `aigate run` start a command on the
// fanotify backend where the kernel has no Landlock: the command can then
// ptrace, read the memory of and signal the user's processes outside the
// sandbox (docs/threat-model.md). Unset, run refuses.
const LandlockEnv = "AIGATE_LANDLOCK"

// landlockOptions is the domain the command enters in the sandbox: fenced
// off from the user's other processes, and the home read-only except the
// project (and the git work tree around the working directory), the temp
// directory, the tools' state and the policy's writable list.
func landlockOptions(pol *policy.Policy, backend, home string, paths *config.Paths, getenv func(string) string) landlock.Options {
	opts := baseLandlockOptions(pol, backend, home, paths, getenv)
	if d, err := claudeConfigDir(opts, getenv); err == nil && d != "" {
		// Claude Code's state moved by $CLAUDE_CONFIG_DIR gets what
		// ~/.claude gets (run refused a directory it cannot protect).
		opts = movedClaudeDir(opts, d)
		opts.Open = claudestate.Options{Home: home, ProjectRoot: paths.ProjectRoot, WorkDir: paths.WorkDir, ConfigDir: d}.OwnProjects()
	}
	return opts
}

// baseLandlockOptions is landlockOptions without Claude Code's state
// moved by $CLAUDE_CONFIG_DIR: what claudeConfigDir checks it against.
func baseLandlockOptions(pol *policy.Policy, backend, home string, paths *config.Paths, getenv func(string) string) landlock.Options {
	opts := landlock.Options{
		// The LSM backend's own hooks refuse ptrace and signals across
		// the sandbox's boundary; fanotify has nothing else.
		Required: backend == string(policy.BackendFanotify) && getenv(LandlockEnv) != "optional",
		Home:     home,
	}
	for _, r := range pol.AllowUnix {
		if strings.HasPrefix(r.Pattern, "@") {
			opts.AbstractUnix = true
		}
	}
	xdgW, xdgCreate := xdgWritable(home, getenv)
	w := append(append([]string{}, landlock.DefaultWritable...), xdgW...)
	// The project, unless it is the home itself (or holds it): run in
	// ~, or below a ~/.aigate.yaml, the tool gets the home's usual
	// writable places, not the whole home (~/.bashrc, ~/.ssh).
	for _, d := range []string{paths.ProjectRoot, paths.WorkDir, gitTop(paths.WorkDir, home)} {
		if d != "" && !holdsHome(d, home) {
			w = append(w, d)
		}
	}
	if tmp := getenv("TMPDIR"); filepath.IsAbs(tmp) {
		w = append(w, tmp)
	}
	for _, t := range policy.CacheTools {
		if !pol.SandboxCaches(t.Name) {
			w = append(w, t.SharedWritable...)
		}
	}
	for _, r := range pol.Writable {
		w = append(w, expandHome(r.Pattern, home))
	}
	opts.Writable = w
	opts.Fixed = landlock.DefaultFixed
	// No sandbox makes another project's directory in ~/.claude/projects
	// (with an auto memory a claude outside would load): the run's rule
	// refuses writes there (claudeRunRules), and Landlock the directory
	// itself, also where the fanotify backend would see its files too late.
	// Likewise no sandbox makes a subagent's memory directory in
	// ~/.claude/agent-memory (a default deny_write; claude inside keeps
	// its own elsewhere, claudeAgentMemoryEnv), nor a session's directory
	// in ~/.claude/session-env (a default deny_write: its scripts are
	// sourced by that session's Bash commands outside), and nothing in
	// ~/.claude/ide (a default deny_write) is removed or renamed: a lock
	// file moved in would be refused only by Landlock, without an event.
	opts.Sealed = []string{claudeProjects, claudeAgentMemory, claudeSessionEnv, claudeIDE}
	opts.Open = claudestate.Options{Home: home, ProjectRoot: paths.ProjectRoot, WorkDir: paths.WorkDir}.OwnProjects()
	opts.Create = append(slices.Clip(landlock.DefaultCreate), xdgCreate...)
	if d := goTelemetryDir(home, getenv); d != "" {
		opts.Create = append(opts.Create, d)
	}
	if paths.User != nil {
		if d := userUnitDir(paths.User.UID); d != "" {
			opts.ReadOnly = []string{d}
		}
	}
	if backend == string(policy.BackendFanotify) {
		// The user's caches get no more than AccessFixed, so that the
		// backend can protect them by their directories (landlockCovers).
		// The sandboxes' own caches are made first: made inside, in the
		// Fixed ~/.cache, their entries could not be removed or renamed
		// (go's module cache renames into place).
		opts.Keep = keptCaches(pol, home)
		opts.Create = append(slices.Clip(opts.Create), sandboxCacheDirs(pol)...)
	}
	return opts
}

// keptCaches are the user's caches that are deny_write in pol (of the
// tools whose caches sandboxes get their own of), absolute.
func keptCaches(pol *policy.Policy, home string) []string {
	var out []string
	for _, t := range policy.CacheTools {
		if !pol.SandboxCaches(t.Name) {
			continue
		}
		for _, c := range t.UserCaches {
			out = append(out, filepath.Clean(expandHome(c, home)))
		}
	}
	return out
}

// sandboxCacheDirs are the sandboxes' own caches of pol's tools, relative
// to the home.
func sandboxCacheDirs(pol *policy.Policy) []string {
	var out []string
	for _, t := range policy.CacheTools {
		if !pol.SandboxCaches(t.Name) {
			continue
		}
		for _, own := range t.Own {
			out = append(out, filepath.Join(policy.SandboxCacheDir, own))
		}
	}
	return out
}

// landlockCovers are the kept caches of opts (a fanotify sandbox's
// domain) that the domain leaves no more than AccessFixed in on this
// kernel (landlock.Covered): the fanotify backend protects those by
// their directory marks, not by an inode mark per file, which cost ~10 us
// per cached file at every start (issue #15). None where the command may
// start without the domain (no Landlock, AIGATE_LANDLOCK=optional). The
// exec helper checks them again just before the command starts.
func landlockCovers(opts landlock.Options, abi int) []string {
	return landlockCoversOf(opts, sandboxDomain(opts, abi), abi)
}

// landlockCoversOf is landlockCovers of opts's domain rs (sandboxDomain).
func landlockCoversOf(opts landlock.Options, rs landlock.Ruleset, abi int) []string {
	if abi == 0 || !opts.Required {
		return nil
	}
	var out []string
	for _, k := range append(slices.Clip(opts.Keep), absSealed(opts)...) {
		if landlock.Covered(rs, k, filepath.EvalSymlinks) {
			out = append(out, k)
		}
	}
	return out
}

// claudeProjects is where Claude Code keeps each project's transcripts and
// auto memory, relative to the home.
const claudeProjects = ".claude/projects"

// claudeAgentMemory is where Claude Code's subagents of user scope keep
// their memory, one directory per agent, relative to the home.
const claudeAgentMemory = ".claude/agent-memory"

// claudeSessionEnv is where Claude Code keeps, per session, the scripts
// its hooks wrote to $CLAUDE_ENV_FILE, relative to the home.
const claudeSessionEnv = ".claude/session-env"

// claudeIDE is where IDEs leave a lock file naming their local server
// (its port, workspace folders and token), relative to the home.
const claudeIDE = ".claude/ide"

// startLandlockCovers computes landlockCovers for p's fanotify domain in a
// goroutine, beside the exec helper's start (its plan lists directories:
// 1.9 ms of the client's set-up on a loaded machine), and returns what
// waits for the answer.
//
// It also makes the domain the command will enter on either backend
// (api.CreateRequest.Landlock), for the agent to judge the calls the
// domain refuses (internal/refused): the agent lists no directory of the
// home itself. The LSM backend's plan runs beside the fanotify one.
func startLandlockCovers(p *runPlan) func() ([]string, map[string]landlock.Ruleset) {
	type answer struct {
		covers  []string
		domains map[string]landlock.Ruleset
	}
	abi := landlock.ABI()
	plan := func(be policy.BackendChoice) (landlock.Options, landlock.Ruleset) {
		opts := landlockOptions(p.pol, string(be), p.id.home, p.loaded.Paths, os.Getenv)
		return opts, sandboxDomain(opts, abi)
	}
	lsm := make(chan landlock.Ruleset, 1)
	go func() { _, rs := plan(policy.BackendLSM); lsm <- rs }()
	ch := make(chan answer, 1)
	go func() {
		opts, rs := plan(policy.BackendFanotify)
		ch <- answer{landlockCoversOf(opts, rs, abi), map[string]landlock.Ruleset{
			string(policy.BackendFanotify): rs,
			string(policy.BackendLSM):      <-lsm,
		}}
	}()
	return sync.OnceValues(func() ([]string, map[string]landlock.Ruleset) { a := <-ch; return a.covers, a.domains })
}

// absSealed are opts.Sealed, absolute: the domain leaves at most
// AccessFixed in them (the own project directories are Open, fixed), so
// the fanotify backend protects them by their directory marks too, not
// by an inode mark per transcript.
func absSealed(opts landlock.Options) []string {
	var out []string
	for _, d := range opts.Sealed {
		out = append(out, filepath.Clean(expandHome("~/"+d, opts.Home)))
	}
	return out
}

// gitTop is the nearest directory holding .git from dir up to (not
// including) home: git writes there on commit.
func gitTop(dir, home string) string {
	if !filepath.IsAbs(dir) {
		return "" // filepath.Dir of a relative path ends at ".", never "/"
	}
	for d := filepath.Clean(dir); d != "/" && d != filepath.Clean(home); d = filepath.Dir(d) {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d
		}
	}
	return ""
}

func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}

// checkLandlock refuses, before anything starts, a run on the fanotify
// backend that needs Landlock where the kernel has none, and says what
// the user gives up where it is missing or old. The LSM backend's hooks
// refuse ptrace and signals across the boundary by themselves, but only
// Landlock keeps the home read-only.
func checkLandlock(f *cmdutil.Factory, backend string, opts landlock.Options, abi int) error {
	fanotify := backend == string(policy.BackendFanotify)
	switch {
	case abi == 0 && opts.Required:
		return fmt.Errorf("the kernel has no Landlock (or it is not in the lsm= boot parameter), so on the fanotify backend the command could ptrace and signal your processes outside the sandbox and write anywhere in your home; enable Landlock (see aigate doctor), use the lsm backend, or set %s=optional to run anyway", LandlockEnv)
	case abi == 0 && fanotify:
		f.Warnf("no Landlock (%s=optional): the command can ptrace and signal your processes outside the sandbox and write anywhere in your home", LandlockEnv)
	case abi == 0:
		f.Warnf("no Landlock: your home stays writable inside the sandbox (only deny_write rules hold there); see aigate doctor")
	case abi < 6 && fanotify:
		f.Warnf("Landlock ABI %d (kernel before 6.12): the command can still signal your processes outside the sandbox and reach abstract unix sockets outside it", abi)
	}
	if abi > 0 {
		for _, d := range regranted(opts) {
			f.Warnf("%s is writable inside the sandbox ($TMPDIR or writable: names it or a directory around it), so the command could plant units there that your systemd user manager runs outside (the lsm backend refuses that, the fanotify backend only opens of existing files); point TMPDIR elsewhere", d)
		}
	}
	return nil
}

// regranted are the ReadOnly directories of opts that a Writable entry
// grants again (landlock.Plan leaves them unprotected).
func regranted(opts landlock.Options) []string {
	var out []string
	for _, d := range opts.ReadOnly {
		for _, w := range opts.Writable {
			if !filepath.IsAbs(w) {
				w = filepath.Join(opts.Home, w)
			}
			w = filepath.Clean(w)
			if strings.HasPrefix(d+"/", w+"/") || strings.HasPrefix(w+"/", d+"/") {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// checkUnixPlant refuses a run on the fanotify backend whose allow_unix
// names a socket (or a directory of sockets) that the sandbox could point
// elsewhere: where it can write in the directory of the name or above it
// (or, for a directory, beneath it), it can plant a symlink or a hard link
// to any socket of the user's (`ln -s ~/.ssh/agent.sock /tmp/allowed/x`)
// or rename the directory away and make its own, and the cgroup
// connect_unix check compares names only (issue #11). Landlock cannot take
// those rights back beneath a directory it grants (/tmp, $TMPDIR, the
// project) without taking them from the whole directory, which tools need,
// so the entry is refused rather than narrowed. The BPF LSM backend checks
// the socket reached and is not asked. rs is the domain the command will
// enter (zero without Landlock).
func checkUnixPlant(pol *policy.Policy, home string, rs landlock.Ruleset, who landlock.Who, st landlock.Stater) error {
	var bad []string
	for _, r := range plantableUnix(pol, home, rs, who, st) {
		bad = append(bad, fmt.Sprintf("%s: allow_unix entry %q: the sandbox can write %s", r.rule.Source, r.rule.Pattern, r.where))
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%s; on the fanotify backend allow_unix matches socket names, so the command could plant a symlink or hard link there to any socket of yours (an ssh-agent, D-Bus) and reach it: list only sockets in directories the sandbox cannot write (move them, e.g. beneath your home outside the project and tool state, or out of /tmp), or use the lsm backend, which checks the socket itself",
		strings.Join(bad, "; "))
}

type plantedUnix struct {
	rule  policy.PathRule
	where string
}

// plantableUnix are the allow_unix path entries the sandbox could point
// elsewhere (see checkUnixPlant).
func plantableUnix(pol *policy.Policy, home string, rs landlock.Ruleset, who landlock.Who, st landlock.Stater) []plantedUnix {
	var out []plantedUnix
	for _, r := range pol.AllowUnix {
		p := expandHome(r.Pattern, home)
		if !filepath.IsAbs(p) {
			continue // @abstract or a bare name: never a path match
		}
		// An entry allows the socket P and every socket beneath it.
		if where, ok := landlock.Plantable(rs, p, true, who, st); ok {
			out = append(out, plantedUnix{r, where})
		}
	}
	return out
}

// sandboxDomain is the Landlock domain the exec helper will make of opts
// on this kernel (zero: none, everything the user may write is writable).
func sandboxDomain(opts landlock.Options, abi int) landlock.Ruleset {
	if abi == 0 {
		return landlock.Ruleset{}
	}
	rs, _ := landlock.Plan(opts, landlock.OSDirs{})
	return rs.Effective(abi)
}

// sandboxUser is who the command runs as.
func sandboxUser(id *identity) landlock.Who {
	who := landlock.Who{UID: uint32(id.uid), GIDs: []uint32{uint32(id.gid)}}
	if id.cred != nil {
		who.GIDs = append(who.GIDs, id.cred.Groups...)
	}
	return who
}

// UnsafeUnix names the allow_unix entries that `aigate run` refuses on
// the fanotify backend: the sandbox could point them at another socket
// (checkUnixPlant); status lists them.
func UnsafeUnix(l *config.Loaded, pol *policy.Policy, backend string) []string {
	u := l.Paths.User
	if u == nil || len(pol.AllowUnix) == 0 {
		return nil
	}
	who := landlock.Who{UID: uint32(u.UID), GIDs: []uint32{uint32(u.GID)}}
	if u.UID == os.Getuid() {
		if gs, err := os.Getgroups(); err == nil {
			for _, g := range gs {
				who.GIDs = append(who.GIDs, uint32(g))
			}
		}
	}
	rs := sandboxDomain(landlockOptions(pol, backend, u.Home, l.Paths, os.Getenv), landlock.ABI())
	var out []string
	for _, r := range plantableUnix(pol, u.Home, rs, who, landlock.OSStat{}) {
		out = append(out, fmt.Sprintf("allow_unix %s (%s): the sandbox can write %s and plant a link to any socket there; aigate run refuses it on the fanotify backend (list sockets in directories it cannot write, or use the lsm backend)",
			r.rule.Pattern, r.rule.Source, r.where))
	}
	return out
}

// claudeConfigDir is $CLAUDE_CONFIG_DIR of the user's environment
// (claudestate.ConfigDir), where Claude Code keeps its state in place of
// ~/.claude and the claude outside started from the same shell reads its
// settings, hooks, plugins and .claude.json; "" when it is unset or
// ~/.claude. It is an error when aigate cannot keep that directory as it
// keeps ~/.claude, given the domain opts (without the directory): outside
// the home or holding it (nothing makes it or its parent read-only), or
// beneath a place the sandbox may write (the project, a temp directory,
// the writable list, ~/.claude's own subdirectories), where the sandbox
// could replace the directory, or a file in it, wholesale.
func claudeConfigDir(opts landlock.Options, getenv func(string) string) (string, error) {
	home := filepath.Clean(opts.Home)
	d, err := claudestate.ConfigDir(getenv(claudestate.ConfigDirEnv), home, filepath.EvalSymlinks)
	if err != nil || d == "" {
		return "", err
	}
	return claudeStatePlace(opts, d, claudeState{
		env:   claudestate.ConfigDirEnv,
		what:  "Claude Code's settings, hooks and MCP servers",
		plant: "the settings, hooks and MCP servers that a claude outside runs from there",
		move:  "move Claude Code's state to a directory of your home that the sandbox cannot write",
		eg:    ".claude-work",
	})
}

// claudeStateDirs are claudeConfigDir and claudeSecureDir of getenv, the
// latter checked against the domain with the former in it.
func claudeStateDirs(pol *policy.Policy, home string, paths *config.Paths, getenv func(string) string) (dir, secure string, err error) {
	opts := baseLandlockOptions(pol, string(policy.BackendFanotify), home, paths, getenv)
	if dir, err = claudeConfigDir(opts, getenv); err != nil {
		return "", "", err
	}
	if dir != "" {
		opts = movedClaudeDir(opts, dir)
	}
	if secure, err = claudeSecureDir(opts, dir, getenv); err != nil {
		return "", "", err
	}
	return dir, secure, nil
}

// claudeSecureDir is $CLAUDE_SECURESTORAGE_CONFIG_DIR of the user's
// environment (claudestate.SecureStorageDir), where Claude Code keeps its
// login (.credentials.json) in place of its state directory, configDir
// (claudeConfigDir; "" for ~/.claude); "" when it is unset, empty or
// one of those. It is an error where aigate cannot keep the login there
// as it keeps ~/.claude's, given the domain opts (with configDir): the
// places claudeConfigDir refuses, and beneath configDir, whose
// subdirectories are writable as ~/.claude's are.
func claudeSecureDir(opts landlock.Options, configDir string, getenv func(string) string) (string, error) {
	home := filepath.Clean(opts.Home)
	d, err := claudestate.SecureStorageDir(getenv(claudestate.SecureStorageEnv), home, configDir, filepath.EvalSymlinks)
	if err != nil || d == "" {
		return "", err
	}
	return claudeStatePlace(opts, d, claudeState{
		env:   claudestate.SecureStorageEnv,
		what:  "Claude Code's login (" + claudestate.Credentials + ")",
		plant: "the login a claude outside sends its requests with",
		move:  "move the login to a directory of your home that the sandbox cannot write",
		eg:    ".claude-login",
	})
}

// claudeState names, for claudeStatePlace's errors, a variable that
// moves Claude Code's state a claude outside trusts.
type claudeState struct {
	env   string // the variable
	what  string // what aigate keeps read-only there
	plant string // what the sandbox could replace there
	move  string // what to do instead, with an example directory eg
	eg    string // beneath the home
}

// claudeStatePlace is d, the absolute directory that s.env names, where
// it really is beneath the home; an error where aigate cannot keep it
// read-only, given the domain opts: outside the home or the home itself
// (nothing makes it or its parent read-only), or beneath a place the
// sandbox may write (the project, a temp directory, the writable list,
// ~/.claude's own subdirectories), where the sandbox could replace the
// directory, or a file in it, wholesale.
func claudeStatePlace(opts landlock.Options, d string, s claudeState) (string, error) {
	home := filepath.Clean(opts.Home)
	move := fmt.Sprintf("%s (e.g. %s) or unset %s", s.move, filepath.Join(home, s.eg), s.env)
	// Where it really is: the LSM backend matches the resolved path, and
	// a link in the home to a directory elsewhere protects nothing there.
	if rd, err := filepath.EvalSymlinks(d); err == nil {
		rhome, herr := filepath.EvalSymlinks(home)
		if herr != nil {
			rhome = home
		}
		rel, rerr := filepath.Rel(rhome, rd)
		if rerr != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("$%s=%s leads to %s, not beneath your home %s: aigate keeps %s read-only only there; %s",
				s.env, d, rd, home, s.what, move)
		}
		d = filepath.Join(home, rel)
	}
	if opts.Home == "" || !config.Within(d, home) || d == home {
		return "", fmt.Errorf("$%s=%s is not beneath your home %s: aigate keeps %s read-only only there; %s",
			s.env, d, home, s.what, move)
	}
	places := append(slices.Clip(opts.Writable), opts.Fixed...)
	for _, w := range places {
		if !filepath.IsAbs(w) {
			w = filepath.Join(home, w)
		}
		if w = filepath.Clean(w); config.Within(d, w) && w != home {
			return "", fmt.Errorf("$%s=%s is beneath %s, which the sandbox may write: a tool inside could replace %s; %s",
				s.env, d, w, s.plant, move)
		}
	}
	return d, nil
}

// movedClaudeDir is opts with d, Claude Code's state directory beneath the
// home (claudeConfigDir), treated as ~/.claude is: its own entries fixed,
// its projects, agent memory, session scripts and IDE locks sealed, the
// run's own project directories in it open, its usual directories made.
func movedClaudeDir(opts landlock.Options, d string) landlock.Options {
	rel, err := filepath.Rel(filepath.Clean(opts.Home), d)
	if err != nil || strings.HasPrefix(rel, "..") {
		return opts
	}
	move := func(list []string) []string {
		out := slices.Clip(list)
		for _, e := range list {
			if e == ".claude" {
				out = append(out, rel)
			} else if r, ok := strings.CutPrefix(e, ".claude/"); ok {
				out = append(out, filepath.Join(rel, r))
			}
		}
		return out
	}
	opts.Fixed = move(opts.Fixed)
	opts.Sealed = move(opts.Sealed)
	opts.Create = move(opts.Create)
	return opts
}
