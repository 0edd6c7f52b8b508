package run

import (
	"path/filepath"
	"strings"

	"github.com/aigate-dev/aigate/internal/events"
)

// claudeStateHint is said once at the end of a run in which a write to
// Claude Code's code-carrying state (plugins, skills, commands, agents,
// hook scripts, memory: default deny_write rules, docs/threat-model.md)
// was refused: installing a plugin from inside fails there, and the event
// line alone does not say how to do it.
const claudeStateHint = "Claude Code's plugins, skills, commands, agents, hooks, workflows, output styles and memory (its own and its subagents') in ~/.claude " +
	"run code (or steer claude) outside the sandbox, so aigate keeps them read-only inside: " +
	"install or edit them outside aigate (`claude plugin install ...` in a plain shell), " +
	"or, to allow it, remove the path from deny_write and add it to writable: in ~/.aigate/config.yaml"

// claudeStateRule tells whether e is a refused write under one of those
// rules, in ~/.claude or in moved, the state directory CLAUDE_CONFIG_DIR
// moves it to ("~/..." with a trailing "/"; "" for none). The settings
// files have their own lines in the docs: a hook there is what the user
// edits with /hooks, not an install; nor is the login (.credentials.json)
// anything to install.
func claudeStateRule(e events.Event, moved string) bool {
	if e.Audit || (e.Op != events.OpWrite && e.Op != events.OpRename) {
		return false
	}
	rest, ok := strings.CutPrefix(e.RuleText, "~/.claude/")
	if !ok && moved != "" {
		rest, ok = strings.CutPrefix(e.RuleText, moved)
	}
	return ok && !strings.HasPrefix(rest, "settings") && rest != ".credentials.json"
}

// claudeJSONHint is said once at the end of a run whose changes to
// ~/.claude.json the agent put back (an events.OpChange event, whose line
// names the keys): how to keep an MCP server.
const claudeJSONHint = "aigate undid what the sandbox changed in ~/.claude.json that a claude outside it would run or allow " +
	"(the line above names it); to keep an MCP server, add it outside aigate (`claude mcp add ...` in a plain shell)"

// claudeSSHHint is said once at the end of a run in which claude's own
// exec of ssh was refused. Claude Code runs `ssh -T git@github.com` at
// every interactive start (to see whether GitHub knows the user's key)
// and, when it cannot clone its plugin marketplace over https, has git
// clone it over ssh; with the default deny_exec both are refused, and the
// bare lines ("blocked exec /usr/bin/ssh (claude, ...)") at every start
// would leave the user wondering what tried to leave.
const claudeSSHHint = "claude runs ssh at its start (`ssh -T git@github.com`, and git over ssh when it cannot fetch its plugin marketplace over https): " +
	"deny_exec refuses it (a default, with curl, scp and the other tools that carry data out); claude works without it. " +
	"To allow it, remove ssh from deny_exec in ~/.aigate/config.yaml"

// claudeSSH tells whether e is claude's own refused exec of ssh (the
// probe; git's clone over ssh runs it from a shell git starts, which
// only follows a probe).
func claudeSSH(e events.Event) bool {
	return !e.Audit && e.Op == events.OpExec && e.Comm == "claude" && filepath.Base(e.Path) == "ssh"
}
