//go:build linux

package run

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
)

// xdgBase is an XDG base directory with its default in the home. The
// programs the policy's rules there protect from (git, gh, fish, direnv,
// the user's systemd manager, the desktop) read their files beneath the
// variable's value instead when it is set to an absolute path, so the
// rules beneath the default are of no use to a user whose profile sets
// it: followXDG names them again there.
type xdgBase struct {
	env string // the variable
	def string // its default, relative to the home
}

var xdgBases = []xdgBase{
	{"XDG_CONFIG_HOME", ".config"},
	{"XDG_DATA_HOME", filepath.Join(".local", "share")},
}

// xdgDataHome is $XDG_DATA_HOME of env (the command's environment),
// cleaned, when it is absolute; "" otherwise. Claude Code's deep-link
// registration (claudestate.Own.DataHome) writes applications/ there in
// place of ~/.local/share/applications. A relative or empty value is
// not followed: the XDG base directory specification has it ignored
// (Claude Code 2.1.332 takes it relative to its working directory; its
// refusals there stay reported).
func xdgDataHome(env []string) string {
	return xdgValue(env, "XDG_DATA_HOME")
}

// xdgValue is variable name of env, cleaned, when it is absolute; "" for
// a relative or empty one, which the specification has ignored.
func xdgValue(env []string, name string) string {
	v := envValue(env, name)
	if !filepath.IsAbs(v) {
		return ""
	}
	return filepath.Clean(v)
}

// xdgDir is where the followed rules of b go for env: the value where it
// leads (the LSM backend matches resolved paths; a directory not made
// yet as it is), "" when unset, relative, or the default itself.
func xdgDir(b xdgBase, env []string, home string, resolve func(string) (string, error)) string {
	v, def := xdgValue(env, b.env), filepath.Join(home, b.def)
	if v == "" || v == def {
		return ""
	}
	if resolve != nil {
		if r, err := resolve(v); err == nil {
			v = r
		}
	}
	if v == def {
		return ""
	}
	return v
}

// xdgRules are the rules of one run that follow the policy's rules
// beneath ~/.config and ~/.local/share to the directories the user's
// $XDG_CONFIG_HOME and $XDG_DATA_HOME name, one list per list of the
// policy whose entries may be paths in the home.
type xdgRules struct {
	Read, Write, Exec []api.RunRule
	// ExceptRead follows except_read: an exception the user made for
	// ~/.config/x holds where the tool keeps x, so that the name and
	// glob rules (*.key) deny there no more than beneath ~/.config.
	ExceptRead []api.RunRule
	// Dirs are the directories followed, "$VAR (dir)", for run's note.
	Dirs []string
}

// count is the number of rules of r.
func (r xdgRules) count() int {
	return len(r.Read) + len(r.Write) + len(r.Exec) + len(r.ExceptRead)
}

// followXDG names every anchored rule of c (deny_read, deny_write,
// deny_exec and except_read paths) beneath ~/.config or ~/.local/share
// again at the same place beneath the directory that $XDG_CONFIG_HOME or
// $XDG_DATA_HOME of env names instead (xdgDir), each saying which rule
// it follows; a rule above the default (~/.local/) is named for all of
// that directory. env is the environment of the user's that run starts from
// (deny_env not applied): the programs outside that read those files
// have it, whatever the command inside gets. Left out, with a note for
// the last two: what a rule of the same list already covers, "/", and an
// exception at or above the home or the project (it would except every
// .env and key there from the name rules, not what the user excepted).
func followXDG(c *policy.Compiled, home, projectRoot string, env []string, resolve func(string) (string, error)) (xdgRules, []string) {
	var out xdgRules
	var notes []string
	if c == nil || !filepath.IsAbs(home) {
		return out, nil
	}
	lists := []struct {
		set  *policy.FileSet
		out  *[]api.RunRule
		loos bool // an exception: it loosens the policy
	}{
		{&c.Read, &out.Read, false},
		{&c.Write, &out.Write, false},
		{&c.Exec, &out.Exec, false},
		{c.Read.Except, &out.ExceptRead, true},
	}
	for _, b := range xdgBases {
		dir := xdgDir(b, env, home, resolve)
		if dir == "" {
			continue
		}
		out.Dirs = append(out.Dirs, fmt.Sprintf("$%s (%s)", b.env, tildeHome(dir, home)))
		def := filepath.Join(home, b.def)
		for _, l := range lists {
			if l.set == nil {
				continue
			}
			for _, e := range l.set.Paths {
				rest, ok := strings.CutPrefix(e.Value, def)
				switch {
				case ok && (rest == "" || rest[0] == '/'):
				case config.Within(def, e.Value):
					rest = "" // a rule above the default covers all of it
				default:
					continue
				}
				rule, _ := c.Rule(e.Rule)
				target := filepath.Join(dir, rest)
				pattern := tildeHome(target, home)
				if rest == "" || strings.HasSuffix(rule.Pattern, "/") {
					pattern += "/"
				}
				by := "$" + b.env + " in place of " + rule.Pattern
				switch {
				case target == "/":
					notes = append(notes, fmt.Sprintf("%s (%s): not followed to /", rule.Pattern, b.env))
					continue
				case l.loos && (config.Within(home, target) || (projectRoot != "" && config.Within(projectRoot, target))):
					notes = append(notes, fmt.Sprintf("except_read %s (%s): not followed to %s, which holds the home or the project", rule.Pattern, b.env, target))
					continue
				case covers(l.set, target):
					continue
				}
				if err := policy.CheckPattern(pattern); err != nil {
					notes = append(notes, fmt.Sprintf("%s (%s): %v", pattern, by, err))
					continue
				}
				*l.out = append(*l.out, api.RunRule{Pattern: pattern, By: by})
			}
		}
	}
	for _, l := range lists {
		*l.out = pruneCovered(*l.out, home)
	}
	return out, notes
}

// pruneCovered drops the rules another of rules covers: the same path
// (the first stays) or one above it (~/cfg/ over ~/cfg/git/).
func pruneCovered(rules []api.RunRule, home string) []api.RunRule {
	abs := func(r api.RunRule) string { return strings.TrimSuffix(expandHome(r.Pattern, home), "/") }
	var out []api.RunRule
	for i, r := range rules {
		p, covered := abs(r), false
		for j, o := range rules {
			if q := abs(o); j != i && config.Within(p, q) && (p != q || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, r)
		}
	}
	return out
}

// covers reports whether an anchored entry of set is p or lies above it.
func covers(set *policy.FileSet, p string) bool {
	for _, e := range set.Paths {
		if config.Within(p, e.Value) {
			return true
		}
	}
	return false
}

// xdgRunRules are followXDG's rules for this run: the policy's rules
// beneath the user's XDG base directories, followed where the
// environment run starts from moves them.
func xdgRunRules(p *runPlan) (xdgRules, []string) {
	return followXDG(p.compiled, p.id.home, p.loaded.Paths.ProjectRoot, commandEnv(os.Environ(), p.id), filepath.EvalSymlinks)
}

// XDGRules are the rules xdgRunRules adds to a run from here, for aigate
// status.
func XDGRules(l *config.Loaded) (read, write, exec, exceptRead []api.RunRule) {
	if l.Paths.User == nil {
		return nil, nil, nil, nil
	}
	c, ok := statusPolicy(l)
	if !ok {
		return nil, nil, nil, nil
	}
	r, _ := followXDG(c, l.Paths.User.Home, l.Paths.ProjectRoot, os.Environ(), filepath.EvalSymlinks)
	return r.Read, r.Write, r.Exec, r.ExceptRead
}

// describeXDG is run's line about the followed rules ("" when none).
func describeXDG(r xdgRules) string {
	if r.count() == 0 {
		return ""
	}
	var parts []string
	for _, l := range []struct {
		n    int
		what string
	}{{len(r.Read), "unreadable"}, {len(r.Write), "read-only"}, {len(r.Exec), "not executable"}, {len(r.ExceptRead), "excepted from the name rules"}} {
		if l.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", l.n, l.what))
		}
	}
	return fmt.Sprintf("the policy's rules in ~/.config and ~/.local/share hold in %s too, where your programs read those files: %s (aigate status lists them)",
		strings.Join(r.Dirs, " and "), strings.Join(parts, ", "))
}

// xdgWritable is the tool state of landlock.DefaultWritable beneath
// ~/.config and ~/.local/state where the user's $XDG_CONFIG_HOME and
// $XDG_STATE_HOME (getenv: aigate run's environment, absolute values
// only) move it: go keeps its telemetry in $XDG_CONFIG_HOME/go/telemetry
// and writes there in every compile, so without this a go build inside
// reported dozens of refusals, and tools lost their state. A directory
// that is or holds the home, a config or data home, or ~/.local/bin is
// not followed: all of it would become writable. create are those of
// them to make when missing, as landlock.DefaultCreate makes the default.
func xdgWritable(home string, getenv func(string) string) (writable, create []string) {
	if !filepath.IsAbs(home) {
		return nil, nil
	}
	value := func(name string) string {
		if v := getenv(name); filepath.IsAbs(v) {
			return filepath.Clean(v)
		}
		return ""
	}
	cfg, state := value("XDG_CONFIG_HOME"), value("XDG_STATE_HOME")
	keep := []string{home, filepath.Join(home, ".config"), filepath.Join(home, ".local", "share"),
		filepath.Join(home, ".local", "bin"), cfg, value("XDG_DATA_HOME")}
	holds := func(d string) bool {
		for _, k := range keep {
			if k != "" && config.Within(k, d) {
				return true
			}
		}
		return false
	}
	for _, w := range landlock.DefaultWritable {
		var base, to string
		switch {
		case strings.HasPrefix(w, ".config/"):
			base, to = ".config", cfg
		case w == filepath.Join(".local", "state") || strings.HasPrefix(w, ".local/state/"):
			base, to = filepath.Join(".local", "state"), state
		}
		if to == "" || to == filepath.Join(home, base) {
			continue
		}
		d := filepath.Join(to, strings.TrimPrefix(strings.TrimPrefix(w, base), "/"))
		if holds(d) {
			continue
		}
		writable = append(writable, d)
		if slices.Contains(landlock.DefaultCreate, w) {
			create = append(create, d)
		}
	}
	return writable, create
}

// goTelemetryDir is the directory where go keeps its telemetry
// ($XDG_CONFIG_HOME or ~/.config, then go/telemetry), for the sandbox to
// make before the home turns read-only, when go is on the PATH of getenv
// and it is missing: a go that never ran outside makes it at its first
// command, and inside it could not (one refusal per compile). "" when
// there is nothing to make.
func goTelemetryDir(home string, getenv func(string) string) string {
	if !filepath.IsAbs(home) {
		return ""
	}
	if _, err := lookPath("go", []string{"PATH=" + getenv("PATH")}); err != nil {
		return ""
	}
	cfg := filepath.Join(home, ".config")
	if v := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(v) {
		cfg = filepath.Clean(v)
	}
	d := filepath.Join(cfg, "go", "telemetry")
	if _, err := os.Stat(d); err == nil {
		return ""
	}
	return d
}
