package claudestate

import (
	"fmt"
	"path/filepath"
	"strings"
)

// ConfigDirEnv is the variable that moves Claude Code's whole state
// directory (2.1.332: settings, hooks, plugins, skills, memory, projects,
// .credentials.json and .claude.json itself, which without it is
// ~/.claude.json). Claude Code takes its value trimmed and joins paths to
// it as it is: a relative one is relative to wherever claude starts.
const ConfigDirEnv = "CLAUDE_CONFIG_DIR"

// ConfigDir is the state directory a claude started with ConfigDirEnv set
// to v keeps, cleaned; "" when v is unset, blank or ~/.claude itself
// (after symlinks, when both resolve). It is an error when v is not an
// absolute path: claude would use another directory in each working
// directory, none of which aigate could name.
func ConfigDir(v, home string, resolve func(string) (string, error)) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	if !filepath.IsAbs(v) {
		return "", fmt.Errorf("$%s=%s is not an absolute path: Claude Code would keep its settings in a different directory in each working directory; set it to an absolute path (e.g. %s)",
			ConfigDirEnv, v, filepath.Join(home, ".claude-work"))
	}
	d := filepath.Clean(v)
	def := filepath.Join(home, ".claude")
	if d == def {
		return "", nil
	}
	if resolve != nil {
		rd, err1 := resolve(d)
		rdef, err2 := resolve(def)
		if err1 == nil && err2 == nil && rd == rdef {
			return "", nil
		}
	}
	return d, nil
}

// Dirs are the state directories a claude outside may use, beneath home:
// ~/.claude always (a claude started from another shell uses it), and dir
// (ConfigDir) when set.
func Dirs(home, dir string) []string {
	out := []string{filepath.Join(home, ".claude")}
	if dir != "" && dir != out[0] {
		out = append(out, dir)
	}
	return out
}

// ClaudeJSON is where a claude whose state directory is dir (ConfigDir; ""
// for the default) keeps its .claude.json: beside ~/.claude by default,
// in dir when it is moved.
func ClaudeJSON(home, dir string) string {
	if dir == "" {
		return filepath.Join(home, ".claude.json")
	}
	return filepath.Join(dir, ".claude.json")
}

// MovedBy begins what names a rule of Moved (Entry.By): the pattern it
// follows.
const MovedBy = "$" + ConfigDirEnv + " in place of "

// Moved are the rules that name ~/.claude (a pattern "~/.claude/..." of
// the policy, the defaults' and the user's own) again for dir, the state
// directory ConfigDirEnv moves it to: everything the policy protects
// there, a claude using dir reads from dir. Patterns beneath home are
// "~/..." ones. A trailing "/" is kept.
func Moved(patterns []string, home, dir string) []Entry {
	if dir == "" {
		return nil
	}
	o := Options{Home: home}
	var out []Entry
	for _, p := range patterns {
		rest, ok := strings.CutPrefix(p, "~/.claude/")
		if !ok || rest == "" {
			continue
		}
		moved := o.pattern(filepath.Join(dir, rest))
		if strings.HasSuffix(rest, "/") {
			moved += "/"
		}
		out = append(out, Entry{Pattern: moved, By: MovedBy + p})
	}
	return out
}
