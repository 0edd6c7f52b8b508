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

// SecureStorageEnv is the variable that moves Claude Code's login alone
// out of its state directory (read from 2.1.332's code: set, claude keeps
// .credentials.json, and the locks of its refreshes, in its value, or in
// ~/.claude when it is empty; unset, in the state directory, ConfigDirEnv's
// or ~/.claude). The value is joined to as it is: not trimmed, a relative
// one relative to wherever claude starts.
const SecureStorageEnv = "CLAUDE_SECURESTORAGE_CONFIG_DIR"

// Credentials is the login's file in the directory that holds it.
const Credentials = ".credentials.json"

// SecureStorageDir is the directory a claude started with SecureStorageEnv
// set to v keeps its login in, cleaned, when it is neither ~/.claude nor
// configDir (ConfigDir; "" for ~/.claude), after symlinks where both
// resolve: the one place beyond the state directories that aigate must
// follow; "" when v is empty (claude then uses ~/.claude) or names one of
// those. It is an error when v is not an absolute path.
func SecureStorageDir(v, home, configDir string, resolve func(string) (string, error)) (string, error) {
	if v == "" {
		return "", nil
	}
	if !filepath.IsAbs(v) {
		return "", fmt.Errorf("$%s=%q is not an absolute path: Claude Code would keep its login in a different directory in each working directory; set it to an absolute path (e.g. %s) or unset it",
			SecureStorageEnv, v, filepath.Join(home, ".claude-login"))
	}
	d := filepath.Clean(v)
	for _, s := range Dirs(home, configDir) {
		if d == s {
			return "", nil
		}
		if resolve != nil {
			rd, err1 := resolve(d)
			rs, err2 := resolve(s)
			if err1 == nil && err2 == nil && rd == rs {
				return "", nil
			}
		}
	}
	return d, nil
}

// SecureStorageBy begins what names the rule of SecureStorage
// (Entry.By): the pattern it follows.
const SecureStorageBy = "$" + SecureStorageEnv + " in place of "

// SecureStorage is the rule that keeps the login in dir
// (SecureStorageDir) as the policy keeps ~/.claude's, by the pattern
// that names ~/.claude's (ok false when dir is "").
func SecureStorage(home, dir string) (Entry, bool) {
	if dir == "" {
		return Entry{}, false
	}
	o := Options{Home: home}
	return Entry{Pattern: o.pattern(filepath.Join(dir, Credentials)), By: SecureStorageBy + "~/.claude/" + Credentials}, true
}
