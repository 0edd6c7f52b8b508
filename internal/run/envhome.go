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
	"github.com/aigate-dev/aigate/internal/policy"
)

// envMove is a default place in the home of files the policy's rules
// protect, and the variable of the user's environment that moves it:
// the program reads its files at the variable's value instead when that
// is an absolute path, so the rules at the default are of no use to a
// user whose profile sets it, and followEnv names them again there.
// Each is the program's own documented variable.
type envMove struct {
	env  string // the variable
	def  string // the default it replaces, relative to the home
	file bool   // the value names a file, not a directory
	list bool   // the value is a colon-separated list of files
	// names, when set, are the only files of the default directory the
	// variable moves (ZDOTDIR moves zsh's startup files, not the home).
	names []string
}

var envMoves = []envMove{
	// The XDG base directories: git, gh, fish, direnv, the user's
	// systemd manager and the desktop read their files beneath them.
	{env: "XDG_CONFIG_HOME", def: ".config"},
	{env: "XDG_DATA_HOME", def: filepath.Join(".local", "share")},
	// git reads this file in place of ~/.gitconfig (and of
	// $XDG_CONFIG_HOME/git/config): a core.fsmonitor there runs at the
	// user's next git status.
	{env: "GIT_CONFIG_GLOBAL", def: ".gitconfig", file: true},
	// gh keeps its config and token in this directory.
	{env: "GH_CONFIG_DIR", def: filepath.Join(".config", "gh")},
	// gpg's home directory: the private keys.
	{env: "GNUPGHOME", def: ".gnupg"},
	// The AWS CLI and SDKs: the access keys, and the config whose
	// credential_process runs a program.
	{env: "AWS_SHARED_CREDENTIALS_FILE", def: filepath.Join(".aws", "credentials"), file: true},
	{env: "AWS_CONFIG_FILE", def: filepath.Join(".aws", "config"), file: true},
	// kubectl merges the files of this list in place of ~/.kube/config;
	// their exec plugins run programs.
	{env: "KUBECONFIG", def: filepath.Join(".kube", "config"), file: true, list: true},
	// docker's client configuration directory (registry logins).
	{env: "DOCKER_CONFIG", def: ".docker"},
	// gcloud's configuration directory (its tokens).
	{env: "CLOUDSDK_CONFIG", def: filepath.Join(".config", "gcloud")},
	// The Azure CLI's configuration directory (its tokens).
	{env: "AZURE_CONFIG_DIR", def: ".azure"},
	// npm's per-user config file (registry tokens); npm takes its
	// settings from npm_config_* in either case.
	{env: "NPM_CONFIG_USERCONFIG", def: ".npmrc", file: true},
	{env: "npm_config_userconfig", def: ".npmrc", file: true},
	// podman, buildah and skopeo read registry logins from this file
	// in place of their usual ones (containers-auth.json(5)): it gets
	// the rules of the one in the home (runtimeSecrets has the other).
	{env: "REGISTRY_AUTH_FILE", def: filepath.Join(".config", "containers", "auth.json"), file: true},
	// zsh reads its startup files in this directory in place of the
	// home (zsh(1), STARTUP/SHUTDOWN FILES): code that runs in the
	// user's next shell.
	{env: "ZDOTDIR", names: []string{".zshenv", ".zprofile", ".zshrc", ".zlogin", ".zlogout"}},
	// pass's password store.
	{env: "PASSWORD_STORE_DIR", def: ".password-store"},
	// libpq's password file.
	{env: "PGPASSFILE", def: ".pgpass", file: true},
}

// envTargets are the places m's variable in env moves its default to:
// each absolute value, cleaned, where it leads (the LSM backend matches
// resolved paths; a path not made yet as it is); none for a relative or
// empty value (the programs would take it relative to their working
// directory, a place no rule can name ahead) nor the default itself.
func envTargets(m envMove, env []string, home string, resolve func(string) (string, error)) []string {
	v := envValue(env, m.env)
	values := []string{v}
	if m.list {
		values = filepath.SplitList(v)
	}
	def := filepath.Join(home, m.def)
	var out []string
	for _, v := range values {
		if v = absClean(v); v == "" || v == def {
			continue
		}
		if resolve != nil {
			if r, err := resolve(v); err == nil {
				v = r
			}
		}
		if v != def && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// envRules are the rules of one run that follow the policy's rules at
// the defaults of envMoves to where the user's environment moves them,
// one list per list of the policy whose entries may be paths in the
// home.
type envRules struct {
	Read, Write, Exec []api.RunRule
	// ExceptRead follows except_read: an exception the user made for
	// ~/.config/x holds where the tool keeps x, so that the name and
	// glob rules (*.key) deny there no more than beneath ~/.config.
	ExceptRead []api.RunRule
	// Moved are the places followed, "$VAR (path)", for run's line.
	Moved []string
}

// count is the number of rules of r.
func (r envRules) count() int {
	return len(r.Read) + len(r.Write) + len(r.Exec) + len(r.ExceptRead)
}

// followEnv names every anchored rule of c (deny_read, deny_write,
// deny_exec and except_read paths) at or beneath a default of envMoves
// again at the same place beneath where the variable of env moves it
// (envTargets), each saying which rule it follows; a rule above the
// default (~/.local/, ~/.aws/) is named for all of the new place. env is
// the environment of the user's that run starts from (deny_env not
// applied): the programs outside that read those files have it, whatever
// the command inside gets. Left out, with a note for the last two: what
// a rule of the same list already covers, a place beneath /dev, /proc or
// /sys (GIT_CONFIG_GLOBAL=/dev/null turns the file off), "/", and a
// place that is or holds the home or the project (a deny rule there
// would stop the tool itself, an exception would except every .env and
// key there from the name rules).
func followEnv(c *policy.Compiled, home, projectRoot string, env []string, resolve func(string) (string, error)) (envRules, []string) {
	var out envRules
	var notes []string
	if c == nil || !filepath.IsAbs(home) {
		return out, nil
	}
	lists := []struct {
		name string
		set  *policy.FileSet
		out  *[]api.RunRule
	}{
		{"deny_read", &c.Read, &out.Read},
		{"deny_write", &c.Write, &out.Write},
		{"deny_exec", &c.Exec, &out.Exec},
		{"except_read", c.Read.Except, &out.ExceptRead},
	}
	for _, m := range envMoves {
		def := filepath.Join(home, m.def)
		for _, to := range envTargets(m, env, home, resolve) {
			before := out.count()
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
					if m.file && rest != "" {
						continue // nothing lies beneath a file
					}
					if m.names != nil && !slices.Contains(m.names, strings.TrimPrefix(rest, "/")) {
						continue // not a file the variable moves
					}
					rule, _ := c.Rule(e.Rule)
					target := filepath.Join(to, rest)
					pattern := tildeHome(target, home)
					if !m.file && (rest == "" || strings.HasSuffix(rule.Pattern, "/")) {
						pattern += "/"
					}
					by := "$" + m.env + " in place of " + rule.Pattern
					switch {
					case target == "/":
						notes = append(notes, fmt.Sprintf("%s %s ($%s): not followed to /", l.name, rule.Pattern, m.env))
						continue
					case config.Within(target, "/dev") || config.Within(target, "/proc") || config.Within(target, "/sys"):
						continue
					case config.Within(home, target) || (projectRoot != "" && config.Within(projectRoot, target)):
						notes = append(notes, fmt.Sprintf("%s %s ($%s): not followed to %s, which is or holds the home or the project (the tool could not work there)", l.name, rule.Pattern, m.env, target))
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
			if out.count() > before {
				out.Moved = append(out.Moved, fmt.Sprintf("$%s (%s)", m.env, tildeHome(to, home)))
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

// envRunRules are followEnv's rules for this run: the policy's rules at
// the defaults the environment run starts from moves, followed there.
func envRunRules(p *runPlan) (envRules, []string) {
	return followEnv(p.compiled, p.id.home, p.loaded.Paths.ProjectRoot, commandEnv(os.Environ(), p.id), filepath.EvalSymlinks)
}

// EnvRules are the rules envRunRules adds to a run from here, for aigate
// status.
func EnvRules(l *config.Loaded) (read, write, exec, exceptRead []api.RunRule) {
	if l.Paths.User == nil {
		return nil, nil, nil, nil
	}
	c, ok := statusPolicy(l)
	if !ok {
		return nil, nil, nil, nil
	}
	r, _ := followEnv(c, l.Paths.User.Home, l.Paths.ProjectRoot, os.Environ(), filepath.EvalSymlinks)
	return r.Read, r.Write, r.Exec, r.ExceptRead
}

// FollowedRule is the pattern of the policy's rule that a rule of
// EnvRules follows (its By), "" for another rule.
func FollowedRule(by string) string {
	if !strings.HasPrefix(by, "$") {
		return ""
	}
	_, rule, _ := strings.Cut(by, " in place of ")
	return rule
}

// describeEnv is run's line about the followed rules ("" when none).
func describeEnv(r envRules) string {
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
	return fmt.Sprintf("the policy's rules hold where your environment moves their files too, %s: %s (aigate status lists them)",
		strings.Join(r.Moved, ", "), strings.Join(parts, ", "))
}
