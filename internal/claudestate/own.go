package claudestate

import (
	"path/filepath"
	"slices"
	"strings"
)

// Call is what a refused call did to the name it refused.
type Call int

const (
	CallOther  Call = iota // a write to an existing file, a link, anything else
	CallCreate             // made a file (open O_CREAT, mknod)
	CallMkdir              // made a directory
	CallRemove             // removed a file or a directory
)

// Own is what a sandbox's own Claude Code state is: where its refusals of
// its own housekeeping are, which it makes at every start and turn in the
// read-only home and carries on without (OwnRefusal).
type Own struct {
	Home string
	// Dir is the state directory $CLAUDE_CONFIG_DIR moves ~/.claude to
	// (ConfigDir), "" when not moved.
	Dir string
	// DataHome is $XDG_DATA_HOME of the tool's environment (absolute,
	// cleaned), where Claude Code registers its deep-link handler in
	// place of ~/.local/share; "" when unset.
	DataHome string
	// Projects are the run's own project directories in the state
	// directories' projects/ (the Except of the run's rule on it).
	Projects []string
	// Resumable tells whether a session of that id existed before the
	// sandbox (its transcript, which claude --resume outside loads).
	Resumable func(stateDir, id string) bool
}

// OwnRefusal reports whether a Landlock refusal of call on path (absolute,
// cleaned, as the agent resolved it) is one of those Claude Code 2.1.332
// makes on its own state at every start or turn, by exact name shape:
//
//   - mkdir of .claude.json.lock (proper-lockfile's lock of the file it
//     rewrites), a file .claude.json.tmp.PID.N made or removed (its atomic
//     rewrite, which it removes when the rename fails), beside ~/.claude or
//     in the moved directory;
//   - mkdir of history.jsonl.lock in the state directory;
//   - mkdir of session-env/UUID for a session that did not exist before
//     the sandbox (its own new session: a resumable one's stays reported);
//   - a removal beneath the run's own project directory in projects/
//     (its subagents' files, which Landlock keeps), or of that directory
//     itself (its clean-up of empty project directories at start, which
//     on a slow machine comes before the session's first transcript);
//   - its deep-link handler: claude-code-url-handler.desktop in
//     applications/ of its data home (DataHome, else ~/.local/share)
//     made or rewritten, and the directories above it made (mkdir -p) up
//     to the home (for a data home outside the home: the data home
//     itself), which an interactive claude does at its start unless that
//     file already names its executable (settings'
//     disableDeepLinkRegistration turns it off). With DataHome set, the
//     same names under ~/.local/share stay reported: claude does not
//     write there.
//
// Everything else is not: another session's environment, another
// project's directory, a write into an existing file, a look-alike name.
func (o Own) OwnRefusal(call Call, path string) bool {
	if call == CallOther || !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return false
	}
	dir, base := filepath.Split(path)
	dir = filepath.Clean(dir)
	for _, sd := range Dirs(o.Home, o.Dir) {
		// .claude.json is beside ~/.claude, and in the moved directory.
		json := filepath.Join(o.Home, ".claude.json")
		if sd != filepath.Join(o.Home, ".claude") {
			json = filepath.Join(sd, ".claude.json")
		}
		switch {
		case call == CallMkdir && path == json+".lock",
			(call == CallCreate || call == CallRemove) && dir == filepath.Dir(json) && tmpOf(base, ".claude.json"),
			call == CallMkdir && path == filepath.Join(sd, "history.jsonl.lock"):
			return true
		case call == CallMkdir && dir == filepath.Join(sd, "session-env") && isUUID(base):
			return o.Resumable != nil && !o.Resumable(sd, base)
		}
	}
	if o.deepLink(call, path) {
		return true
	}
	return call == CallRemove && o.InProject(path)
}

// deepLinkFile is where Claude Code registers its claude-cli:// handler
// on Linux, in the XDG data home: 2.1.332 takes $XDG_DATA_HOME when it is
// set (`XDG_DATA_HOME ?? join(home, ".local", "share")`), else
// ~/.local/share.
const deepLinkFile = "applications/claude-code-url-handler.desktop"

// deepLinkDirs are the handler's file and the directories Claude Code
// may make for it, deepest first: up to the home, not included, or, for
// a data home outside the home, up to the data home itself.
func (o Own) deepLinkDirs() (file string, dirs []string) {
	data, stop := o.DataHome, o.Home
	if data == "" {
		data = filepath.Join(o.Home, ".local", "share")
	}
	if !filepath.IsAbs(data) || filepath.Clean(data) != data || !filepath.IsAbs(o.Home) {
		return "", nil
	}
	if !strings.HasPrefix(data, o.Home+"/") {
		stop = filepath.Dir(data)
	}
	file = filepath.Join(data, deepLinkFile)
	for d := filepath.Dir(file); d != stop && d != "/" && d != "."; d = filepath.Dir(d) {
		dirs = append(dirs, d)
	}
	return file, dirs
}

// deepLink: is call on path Claude Code's registration of its deep-link
// handler (fs.mkdir recursive of its directory, then fs.writeFile)?
func (o Own) deepLink(call Call, path string) bool {
	file, dirs := o.deepLinkDirs()
	if file != "" && path == file {
		return call == CallCreate // open O_CREAT, also of an existing file
	}
	return call == CallMkdir && slices.Contains(dirs, path)
}

// InProject reports whether path is the run's own project directory or
// beneath it.
func (o Own) InProject(path string) bool {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return false
	}
	for _, p := range o.Projects {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// tmpOf: is name the temporary file Claude Code rewrites file through,
// file.tmp.PID.N (N Date.now() in decimal, or random bytes in hex)?
func tmpOf(name, file string) bool {
	rest, ok := strings.CutPrefix(name, file+".tmp.")
	if !ok {
		return false
	}
	pid, n, ok := strings.Cut(rest, ".")
	return ok && digits(pid, "0123456789") && digits(n, "0123456789abcdef")
}

func digits(s, set string) bool {
	if s == "" || len(s) > 24 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune(set, c) {
			return false
		}
	}
	return true
}

// isUUID: a session id, 8-4-4-4-12 lower-case hex.
func isUUID(s string) bool {
	parts := strings.Split(s, "-")
	if len(parts) != 5 {
		return false
	}
	for i, n := range []int{8, 4, 4, 4, 12} {
		if len(parts[i]) != n || !digits(parts[i], "0123456789abcdef") {
			return false
		}
	}
	return true
}

// SessionExists is an Own.Resumable: a transcript stateDir/projects/*/ID.jsonl
// last changed before since (unix nanoseconds).
func SessionExists(since int64, modTime func(path string) (int64, bool)) func(stateDir, id string) bool {
	return func(stateDir, id string) bool {
		m, _ := filepath.Glob(filepath.Join(stateDir, "projects", "*", id+".jsonl"))
		for _, p := range m {
			if t, ok := modTime(p); !ok || t < since {
				return true
			}
		}
		return false
	}
}

// Parent reports whether dir may be the directory of a refusal
// OwnRefusal keeps quiet: the kernel's audit names only the directory a
// name was made or removed in, and the agent then waits for the refused
// call's own report, which has the name.
func (o Own) Parent(dir string) bool {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return false
	}
	if dir == o.Home {
		return true
	}
	if _, dirs := o.deepLinkDirs(); len(dirs) > 0 && (slices.Contains(dirs, dir) || dir == filepath.Dir(dirs[len(dirs)-1])) {
		return true
	}
	for _, sd := range Dirs(o.Home, o.Dir) {
		if dir == sd || dir == filepath.Join(sd, "session-env") {
			return true
		}
	}
	for _, p := range o.Projects {
		if dir == p || strings.HasPrefix(dir, p+"/") || dir == filepath.Dir(p) {
			return true
		}
	}
	return false
}
