package darwin

import (
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/aigate-dev/aigate/internal/policy"
)

// PassEnv are the variables a tool needs from the person's environment to
// reach its model: Apple's sudoers resets the environment (env_reset) and
// keeps none of them, so they only reach `sudo aigate run` when named with
// sudo's --preserve-env=LIST (see SudoHint). They are read from Claude
// Code's authentication and network documentation, and the API keys of
// other agents.
var PassEnv = []string{
	"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
	"ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX",
	"OPENAI_API_KEY", "GEMINI_API_KEY",
	"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "NODE_EXTRA_CA_CERTS",
}

// AuthEnv are the PassEnv variables that carry credentials; a run of
// Claude Code with none of them needs a login made as the sandbox user.
var AuthEnv = []string{"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"}

// LoginDomains are the hosts Claude Code's own login (/login, token
// refresh) talks to, besides api.anthropic.com, from its network
// requirements: claude.ai for subscription accounts, platform.claude.com
// (console.anthropic.com before it) for Console accounts. A fresh sandbox
// user has no login, so a run that allows api.anthropic.com allows these
// too (AddLoginDomains): they are Anthropic's own, no wider an exit than
// the API host already is.
var LoginDomains = []string{"claude.ai", "platform.claude.com", "console.anthropic.com"}

// SudoHint is the command line that runs argv under aigate with the PassEnv
// variables that are set in environ passed through sudo.
func SudoHint(environ []string, argv []string) string {
	set := map[string]bool{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		set[k] = v != ""
	}
	var keep []string
	for _, k := range PassEnv {
		if set[k] {
			keep = append(keep, k)
		}
	}
	line := "sudo "
	if len(keep) > 0 {
		line += "--preserve-env=" + strings.Join(keep, ",") + " "
	}
	return line + "aigate run -- " + strings.Join(argv, " ")
}

// HasAuth reports whether any AuthEnv variable is set in environ.
func HasAuth(environ []string) bool {
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		for _, a := range AuthEnv {
			if k == a && v != "" {
				return true
			}
		}
	}
	return false
}

// ToolEnv is the environment the tool runs with: environ (what sudo let
// through) without the invoking user's identity, home and private
// TMPDIR, with the sandbox user's HOME, USER and LOGNAME, and git's
// safe.directory set for the project's repository. The repository belongs
// to the person, not to the sandbox user, so git >= 2.35.2 would stop with
// "detected dubious ownership"; GIT_CONFIG_COUNT is command-scope
// configuration, which git reads safe.directory from (checked with git
// 2.39.5, Apple's version, in TestToolEnvGitSafeDirectory), and it names
// this one repository rather than "*".
func ToolEnv(environ []string, u SandboxUser, gitTop string) []string {
	drop := map[string]bool{"HOME": true, "USER": true, "LOGNAME": true, "TMPDIR": true,
		"SUDO_USER": true, "SUDO_UID": true, "SUDO_GID": true, "SUDO_COMMAND": true}
	n := 0
	var out []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if k == "GIT_CONFIG_COUNT" {
			n, _ = strconv.Atoi(v)
			continue
		}
		if !drop[k] {
			out = append(out, kv)
		}
	}
	out = append(out, "HOME="+u.Home, "USER="+u.Name, "LOGNAME="+u.Name)
	if gitTop != "" {
		i := strconv.Itoa(n)
		out = append(out, "GIT_CONFIG_KEY_"+i+"=safe.directory", "GIT_CONFIG_VALUE_"+i+"="+gitTop, "GIT_CONFIG_COUNT="+strconv.Itoa(n+1))
	} else if n > 0 {
		out = append(out, "GIT_CONFIG_COUNT="+strconv.Itoa(n))
	}
	return out
}

// GitTop returns the top of the repository the project is in: the nearest
// directory from projectRoot up that holds a .git entry, or projectRoot
// when there is none (the tool may run git init).
func GitTop(fsys fs.FS, projectRoot string) string {
	for d := path.Clean(projectRoot); ; d = path.Dir(d) {
		if _, err := fs.Lstat(fsys, rel(path.Join(d, ".git"))); err == nil {
			return d
		}
		if d == "/" || d == "." {
			return projectRoot
		}
	}
}

// AddLoginDomains allows LoginDomains in c when c allows api.anthropic.com
// and denies the rest, each under a rule of its own that says why, and
// returns the names it added. A policy that does not allow the API host
// is left alone: it does not mean to run Claude Code.
func AddLoginDomains(c *policy.Compiled) []string {
	if c.Net.Mode == policy.NetAllow {
		return nil
	}
	have := map[string]bool{}
	api := false
	for _, d := range c.Net.Domains {
		have[d.Name] = true
		api = api || d.Name == "api.anthropic.com" && !d.Wildcard && (d.Port == 0 || d.Port == 443)
	}
	if !api {
		return nil
	}
	var added []string
	for _, name := range LoginDomains {
		if have[name] {
			continue
		}
		id := policy.RuleID(len(c.Rules) + 1)
		c.Rules = append(c.Rules, policy.Rule{ID: id, Pattern: name + " (macOS: Claude Code login, allowed with api.anthropic.com)"})
		c.Net.Domains = append(c.Net.Domains, policy.DomainEntry{Name: name, Port: 443, Rule: id})
		added = append(added, name)
	}
	return added
}
