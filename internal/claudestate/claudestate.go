package claudestate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Entry is one deny_write pattern for the run and what names it.
type Entry struct {
	// Pattern is "~/..." beneath the home, else an absolute path.
	Pattern string `json:"pattern"`
	// By says where it comes from: "~/.claude/settings.json statusLine.command",
	// "auto memory of /home/u/p".
	By string `json:"by"`
	// Except are absolute paths beneath Pattern it does not cover
	// (api.RunRule.Except): the run's own project directories.
	Except []string `json:"except,omitempty"`
}

// Result is what Scan found, and what it could not follow.
type Result struct {
	Entries []Entry
	// Uncovered names each command whose program is not a file aigate
	// can protect (a name found in PATH, a variable), for the user.
	Uncovered []string
}

// Options are where to look.
type Options struct {
	Home        string
	ProjectRoot string // the run's project root
	WorkDir     string // where the run starts
	// Managed is the system's managed settings file; empty: none.
	Managed string
	// EnvMemory is MemoryOverrideEnv in the user's environment: the auto
	// memory a claude started from there outside loads.
	EnvMemory string
	// EnvRemoteMemory is RemoteMemoryEnv in the user's environment: where
	// a claude started from there outside keeps the subagents' memory.
	EnvRemoteMemory string
	// ConfigDir is ConfigDirEnv's directory in the user's environment
	// (ConfigDir): Claude Code's state moved there from ~/.claude, which
	// is scanned as well.
	ConfigDir string
}

// ManagedSettings is where Claude Code reads the administrator's settings
// on Linux: root's file, but a script it names may be the user's.
const ManagedSettings = "/etc/claude-code/managed-settings.json"

// Scan reads the settings files as the caller (the user) and lists the
// files they make claude run; ~/.claude/projects but the run's own
// project directories, and their auto memory. It reads only; a missing or
// broken settings file names nothing (claude ignores it too).
func Scan(o Options) Result {
	var r Result
	seen := map[string]bool{}
	add := func(path, by string, except ...string) {
		p := o.pattern(path)
		if p == "" || seen[p] {
			return
		}
		seen[p] = true
		r.Entries = append(r.Entries, Entry{Pattern: p, By: by, Except: except})
	}
	var files []string
	for _, d := range o.dirs() {
		files = append(files, filepath.Join(d, "settings.json"), filepath.Join(d, "settings.local.json"))
	}
	if o.ProjectRoot != "" {
		files = append(files, filepath.Join(o.ProjectRoot, ".claude", "settings.json"), filepath.Join(o.ProjectRoot, ".claude", "settings.local.json"))
	}
	if o.Managed != "" {
		files = append(files, o.Managed)
	}
	for _, f := range files {
		for _, c := range settingsCommands(f) {
			path, why := o.program(c.command)
			if path == "" {
				r.Uncovered = append(r.Uncovered, fmt.Sprintf("%s %s: %s", o.pretty(f), c.key, why))
				continue
			}
			add(path, o.pretty(f)+" "+c.key)
		}
		if d := autoMemoryDirectory(f); d != "" {
			add(o.expand(d), o.pretty(f)+" autoMemoryDirectory")
		}
	}
	if filepath.IsAbs(o.EnvMemory) {
		add(filepath.Clean(o.EnvMemory), "$"+MemoryOverrideEnv)
	}
	if filepath.IsAbs(o.EnvRemoteMemory) {
		// ~/.claude/agent-memory/ is a default; this is the same memory
		// moved, and projects/ holds its per-project (local) scope.
		add(filepath.Join(o.EnvRemoteMemory, "agent-memory"), "$"+RemoteMemoryEnv)
		add(filepath.Join(o.EnvRemoteMemory, "projects"), "$"+RemoteMemoryEnv)
	}
	for _, cd := range o.dirs() {
		add(filepath.Join(cd, "projects")+"/", ProjectsBy, o.ownProjectsIn(cd)...)
		for _, dir := range o.ownDirs() {
			add(filepath.Join(cd, "projects", Sanitize(dir), "memory"), "auto memory of "+dir)
		}
		for _, f := range shellSnapshots(filepath.Join(cd, "shell-snapshots"), MaxSnapshots) {
			add(f, SnapshotBy)
		}
		for _, d := range agentTeams(filepath.Join(cd, "teams"), MaxTeams) {
			add(d, TeamBy)
		}
	}
	return r
}

// dirs are the state directories to scan: ~/.claude and ConfigDir
// (Dirs); none without a home.
func (o Options) dirs() []string {
	if o.Home == "" {
		return nil
	}
	return Dirs(o.Home, o.ConfigDir)
}

// SnapshotBy is what names the rule on a shell snapshot (Entry.By).
const SnapshotBy = "shell snapshot of a claude session running at the start"

// MaxSnapshots bounds the shell snapshots kept read-only for one run (the
// newest): each is a rule.
const MaxSnapshots = 64

// shellSnapshots are the newest max shell snapshots in dir (regular files
// snapshot-<shell>-<time>-<random>.sh, nothing followed). Each is the
// shell set-up of a claude session that is running (claude removes its
// own at its end), and that session runs it before each of its Bash
// commands without asking anyone: one rewritten from inside runs outside
// in the user's claude of another terminal. A session makes its own at
// its start and never writes an older one, so claude inside, which makes
// its own after the sandbox exists, writes none of these.
func shellSnapshots(dir string, max int) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	type snap struct {
		path string
		mod  int64
	}
	var snaps []snap
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), "snapshot-") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		snaps = append(snaps, snap{filepath.Join(dir, e.Name()), fi.ModTime().UnixNano()})
	}
	sort.Slice(snaps, func(i, j int) bool {
		if snaps[i].mod != snaps[j].mod {
			return snaps[i].mod > snaps[j].mod
		}
		return snaps[i].path < snaps[j].path
	})
	out := make([]string, 0, min(len(snaps), max))
	for _, s := range snaps[:min(len(snaps), max)] {
		out = append(out, s.path)
	}
	return out
}

// TeamBy is what names the rule on an agent team's directory (Entry.By).
const TeamBy = "agent team present at the start"

// MaxTeams bounds the agent teams kept read-only for one run (the newest):
// each is a rule.
const MaxTeams = 64

// TeamIdle is how long a team's directory and inboxes may have been left
// unchanged and still be protected: Claude Code's start-up cleanup removes
// inbox files older than cleanupPeriodDays (30 by default), and a running
// team writes its inboxes (through a rename, which dates the directory).
const TeamIdle = 30 * 24 * time.Hour

// deletedTeam is the name Claude Code gives a team it deletes (2.1.332).
var deletedTeam = regexp.MustCompile(`\.deleted-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$`)

// agentTeams are the newest max agent teams in dir (directories
// ~/.claude/teams/<team>, nothing followed). Each teammate of a team, a
// claude of its own, reads its inbox there (inboxes/<agent>.json) and
// takes the messages into its conversation as a teammate's: one planted
// from inside steers a teammate or lead running outside. Claude inside
// makes and writes its own teams, after the sandbox exists; none of these.
// Left out: a team marked deleted (<team>.deleted-<uuid>, which claude
// removes at its start, inside too) and one idle for TeamIdle (whose
// inboxes claude's start-up cleanup removes): no teammate reads them, and
// on fanotify a removal of a protected file is undone after the fact.
func agentTeams(dir string, max int) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	type team struct {
		path string
		mod  int64
	}
	var teams []team
	for _, e := range ents {
		if !e.IsDir() || deletedTeam.MatchString(e.Name()) {
			continue // a link too: claude makes directories
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		// A team's inboxes change as messages come, its directory only
		// as inboxes are made: the newest of the two dates it.
		mod := fi.ModTime().UnixNano()
		if ii, err := os.Lstat(filepath.Join(dir, e.Name(), "inboxes")); err == nil && ii.ModTime().UnixNano() > mod {
			mod = ii.ModTime().UnixNano()
		}
		if time.Since(time.Unix(0, mod)) > TeamIdle {
			continue
		}
		teams = append(teams, team{filepath.Join(dir, e.Name()), mod})
	}
	sort.Slice(teams, func(i, j int) bool {
		if teams[i].mod != teams[j].mod {
			return teams[i].mod > teams[j].mod
		}
		return teams[i].path < teams[j].path
	})
	out := make([]string, 0, min(len(teams), max))
	for _, t := range teams[:min(len(teams), max)] {
		out = append(out, t.path)
	}
	return out
}

// ProjectsBy is what names the rule on ~/.claude/projects (Entry.By).
const ProjectsBy = "auto memory of every other project"

type command struct{ key, command string }

// settingsCommands are the shell commands a settings file makes claude
// run: statusLine, apiKeyHelper and its kin, every hook of type command.
func settingsCommands(path string) []command {
	data, err := readSmall(path)
	if err != nil {
		return nil
	}
	var s struct {
		StatusLine *struct {
			Command string `json:"command"`
		} `json:"statusLine"`
		APIKeyHelper        string                       `json:"apiKeyHelper"`
		AWSAuthRefresh      string                       `json:"awsAuthRefresh"`
		AWSCredentialExport string                       `json:"awsCredentialExport"`
		OtelHeadersHelper   string                       `json:"otelHeadersHelper"`
		Hooks               map[string][]json.RawMessage `json:"hooks"`
	}
	if json.Unmarshal(data, &s) != nil {
		return nil
	}
	var out []command
	if s.StatusLine != nil && s.StatusLine.Command != "" {
		out = append(out, command{"statusLine.command", s.StatusLine.Command})
	}
	for _, h := range []command{{"apiKeyHelper", s.APIKeyHelper}, {"awsAuthRefresh", s.AWSAuthRefresh},
		{"awsCredentialExport", s.AWSCredentialExport}, {"otelHeadersHelper", s.OtelHeadersHelper}} {
		if h.command != "" {
			out = append(out, h)
		}
	}
	events := make([]string, 0, len(s.Hooks))
	for ev := range s.Hooks {
		events = append(events, ev)
	}
	sort.Strings(events)
	for _, ev := range events {
		for i, raw := range s.Hooks[ev] {
			var m struct {
				Hooks []struct {
					Type    string `json:"type"`
					Command string `json:"command"`
				} `json:"hooks"`
			}
			if json.Unmarshal(raw, &m) != nil {
				continue
			}
			for j, h := range m.Hooks {
				if h.Command != "" && (h.Type == "" || h.Type == "command") {
					out = append(out, command{fmt.Sprintf("hooks.%s[%d].hooks[%d].command", ev, i, j), h.Command})
				}
			}
		}
	}
	return out
}

// autoMemoryDirectory is where a settings file moves the auto memory.
// Claude Code takes it from the user's, local and managed settings, not
// the project's shared ones; protecting it wherever named costs nothing.
func autoMemoryDirectory(path string) string {
	data, err := readSmall(path)
	if err != nil {
		return ""
	}
	var s struct {
		Dir string `json:"autoMemoryDirectory"`
	}
	if json.Unmarshal(data, &s) != nil {
		return ""
	}
	return s.Dir
}

// interpreters run the file their first argument names: `bash
// ~/.claude/x.sh` runs that file as surely as `~/.claude/x.sh`.
var interpreters = map[string]bool{"sh": true, "bash": true, "zsh": true, "dash": true, "fish": true,
	"python": true, "python3": true, "node": true, "bun": true, "deno": true, "ruby": true, "perl": true, "php": true}

// program is the file a command runs, conservatively: its first word (or
// an interpreter's first argument) when that is a path, after "~/",
// $HOME and $CLAUDE_PROJECT_DIR. Otherwise "" and why.
func (o Options) program(cmd string) (string, string) {
	words := shellWords(cmd)
	for len(words) > 0 && isAssignment(words[0]) {
		words = words[1:]
	}
	if len(words) == 0 {
		return "", "no program"
	}
	w := words[0]
	if interpreters[filepath.Base(w)] {
		for _, a := range words[1:] {
			if strings.HasPrefix(a, "-") {
				return "", fmt.Sprintf("`%s` runs %s with options (-c and the like), not a file aigate follows", cmd, filepath.Base(w))
			}
			w = a
			break
		}
		if w == words[0] {
			return "", fmt.Sprintf("`%s` runs %s on no file", cmd, filepath.Base(w))
		}
	}
	p := o.expand(w)
	if strings.Contains(p, "$") || strings.ContainsAny(p, "`*?[") {
		return "", fmt.Sprintf("`%s`: the program's name holds a variable or a glob aigate does not expand", cmd)
	}
	if !strings.Contains(p, "/") {
		return "", fmt.Sprintf("`%s` runs %s, found in PATH (a PATH directory the sandbox may write is protected only if deny_write lists it)", cmd, p)
	}
	if !filepath.IsAbs(p) {
		// Claude Code runs hooks in the project's directory.
		if o.ProjectRoot == "" {
			return "", fmt.Sprintf("`%s`: a relative path with no project", cmd)
		}
		p = filepath.Join(o.ProjectRoot, p)
	}
	return filepath.Clean(p), ""
}

func isAssignment(w string) bool {
	i := strings.IndexByte(w, '=')
	return i > 0 && !strings.ContainsAny(w[:i], "/$\"'")
}

// shellWords splits cmd on blanks, honouring quotes and stopping at the
// first shell operator: enough for the first words of a hook command.
func shellWords(cmd string) []string {
	var words []string
	var cur strings.Builder
	in := false // inside a word
	var quote byte
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '\\' && i+1 < len(cmd):
			i++
			cur.WriteByte(cmd[i])
			in = true
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case strings.IndexByte(";&|<>()", c) >= 0:
			if in {
				words = append(words, cur.String())
			}
			return words
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// expand resolves what Claude Code's docs write in commands: "~/", $HOME,
// $CLAUDE_PROJECT_DIR (the project's root).
func (o Options) expand(w string) string {
	for _, v := range []struct{ name, val string }{
		{"${HOME}", o.Home}, {"$HOME", o.Home},
		{"${CLAUDE_PROJECT_DIR}", o.ProjectRoot}, {"$CLAUDE_PROJECT_DIR", o.ProjectRoot},
	} {
		if rest, ok := strings.CutPrefix(w, v.name); ok && v.val != "" && (rest == "" || rest[0] == '/') {
			return v.val + rest
		}
	}
	if w == "~" || strings.HasPrefix(w, "~/") {
		return o.Home + w[1:]
	}
	return w
}

// pattern is path as a deny_write pattern: "~/" beneath the home.
func (o Options) pattern(path string) string {
	if !filepath.IsAbs(path) {
		return ""
	}
	path = filepath.Clean(path)
	if o.Home != "" {
		if rel, err := filepath.Rel(o.Home, path); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return "~/" + filepath.ToSlash(rel)
		}
	}
	return path
}

func (o Options) pretty(path string) string {
	if p := o.pattern(path); p != "" {
		return p
	}
	return path
}

// OwnMemory is the auto-memory directory of the run's own project, the
// one a claude outside loads in its next session there; "" without a
// home.
func (o Options) OwnMemory() string {
	if o.Home == "" {
		return ""
	}
	dir := gitRoot(o.WorkDir)
	if dir == "" {
		dir = o.ProjectRoot
	}
	if dir == "" {
		dir = o.WorkDir
	}
	if dir == "" {
		return ""
	}
	cd := filepath.Join(o.Home, ".claude")
	if o.ConfigDir != "" {
		cd = o.ConfigDir // where the claude of the run's environment keeps it
	}
	return filepath.Join(cd, "projects", Sanitize(dir), "memory")
}

// ownDirs are the directories claude may key the run's project by: its
// git root, project root and working directory, once each.
func (o Options) ownDirs() []string {
	var out []string
	for _, dir := range []string{gitRoot(o.WorkDir), o.ProjectRoot, o.WorkDir} {
		if dir != "" && !slices.Contains(out, dir) {
			out = append(out, dir)
		}
	}
	return out
}

// OwnProjects are the run's own project directories in ~/.claude/projects
// (~/.claude/projects/<sanitized path> of each of ownDirs): Claude Code
// writes its transcripts there, so they stay writable inside while the
// rest of ~/.claude/projects is not. Every other project's directory,
// present or future, holds an auto memory a claude outside loads into its
// next session there (memory/MEMORY.md); one rule on the whole directory
// protects them all at a constant cost.
func (o Options) OwnProjects() []string {
	var out []string
	for _, cd := range o.dirs() {
		out = append(out, o.ownProjectsIn(cd)...)
	}
	return out
}

// ownProjectsIn are OwnProjects in one state directory.
func (o Options) ownProjectsIn(cd string) []string {
	var out []string
	for _, dir := range o.ownDirs() {
		p := filepath.Join(cd, "projects", Sanitize(dir))
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// MemoryOverrideEnv is the variable that moves Claude Code's auto memory
// to another directory before any setting does (2.1.332: it wins over
// autoMemoryDirectory and the default ~/.claude/projects/<project>/memory;
// an absolute path). run sets it in the sandbox to SandboxMemory, so that
// claude inside keeps its notes where no claude outside reads them, and
// the real memory can stay read-only without breaking it.
const MemoryOverrideEnv = "CLAUDE_COWORK_MEMORY_PATH_OVERRIDE"

// SandboxMemoryDir is where the sandboxes' own auto memory lives, beneath
// the home, next to their own build caches (policy.SandboxCacheDir).
const SandboxMemoryDir = ".cache/aigate/claude-memory"

// SandboxMemory is the auto-memory directory claude inside the sandbox
// uses for the project whose real one is own (OwnMemory): one per
// project, kept across runs, shared by the user's sandboxes.
func SandboxMemory(home, own string) string {
	return filepath.Join(home, SandboxMemoryDir, filepath.Base(filepath.Dir(own)))
}

// RemoteMemoryEnv is the variable that moves the subagents' memory of
// user scope (Claude Code 2.1.332: $CLAUDE_CODE_REMOTE_MEMORY_DIR/
// agent-memory/<agent>/ in place of ~/.claude/agent-memory/<agent>/) and
// of local scope ($CLAUDE_CODE_REMOTE_MEMORY_DIR/projects/<project>/
// agent-memory-local/ in place of the project's .claude/agent-memory-local/).
// MemoryOverrideEnv wins over it for the auto memory, and transcripts stay
// in ~/.claude/projects. run sets it in the sandbox to SandboxAgentMemory:
// a subagent loads its MEMORY.md into its prompt at every start, so the
// real one, which a claude outside loads, is read-only inside.
const RemoteMemoryEnv = "CLAUDE_CODE_REMOTE_MEMORY_DIR"

// SandboxAgentMemoryDir is where the sandboxes' own subagent memory lives
// (RemoteMemoryEnv's directory), beneath the home, beside their auto
// memory: one for all the user's sandboxes, as the real one is one for
// all the user's sessions.
const SandboxAgentMemoryDir = ".cache/aigate/claude-agent-memory"

// maxSeedAgents bounds the agents whose memory SeedAgentMemory copies.
const maxSeedAgents = 256

// SeedAgentMemory copies the subagents' memory of user scope (real,
// ~/.claude/agent-memory: one directory per agent) into the sandboxes'
// (root/agent-memory, root being SandboxAgentMemoryDir beneath the home)
// as SeedMemory does for each agent's directory, so that a subagent inside
// starts from what it noted outside. Run as the user, before the sandbox
// exists. It returns how many files it copied.
func SeedAgentMemory(real, root string) (int, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return 0, fmt.Errorf("make the sandbox's agent memory: %w", err)
	}
	// SeedMemory checks the two levels it writes beneath; root too is
	// in the sandboxes' reach.
	if fi, err := os.Lstat(root); err != nil || !fi.IsDir() {
		return 0, fmt.Errorf("%s is not a directory (a link?): remove it", root)
	}
	ents, err := os.ReadDir(real)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("read the agent memory: %w", err)
	}
	n := 0
	for i, e := range ents {
		if i >= maxSeedAgents {
			break
		}
		if !e.IsDir() {
			continue
		}
		c, err := SeedMemory(filepath.Join(real, e.Name()), filepath.Join(root, "agent-memory", e.Name()))
		n += c
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Seed bounds: auto memory is a few small markdown files (claude loads
// the first 25 KB of MEMORY.md).
const (
	maxSeedFiles = 256
	maxSeedSize  = 1 << 20
)

// SeedMemory copies the real auto memory's files (own, top level, regular,
// at most 1 MiB) into the sandbox's (sandbox, made if missing) where the
// sandbox has no copy or an older one than the real file, so claude inside
// starts from what the user's sessions noted; a note the sandbox changed
// since is kept. Run as the user, before the sandbox exists. It returns
// how many files it copied.
func SeedMemory(own, sandbox string) (int, error) {
	if err := os.MkdirAll(sandbox, 0o700); err != nil {
		return 0, fmt.Errorf("make the sandbox's auto memory: %w", err)
	}
	// A sandbox may have put a link there: the notes would be copied
	// where it points, by a process outside every sandbox.
	for _, d := range []string{filepath.Dir(sandbox), sandbox} {
		if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
			return 0, fmt.Errorf("%s is not a directory (a link?): remove it", d)
		}
	}
	ents, err := os.ReadDir(own)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("read the auto memory: %w", err)
	}
	n := 0
	for i, e := range ents {
		if i >= maxSeedFiles {
			break
		}
		if !e.Type().IsRegular() {
			continue
		}
		src, dst := filepath.Join(own, e.Name()), filepath.Join(sandbox, e.Name())
		si, err := e.Info()
		if err != nil || si.Size() > maxSeedSize {
			continue
		}
		if di, err := os.Lstat(dst); err == nil && !di.ModTime().Before(si.ModTime()) {
			continue
		}
		if err := copyNote(src, dst, si); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// copyNote writes src's content at dst through a temporary file and a
// rename (never through a link the sandbox may have put at dst), with
// src's modification time.
func copyNote(src, dst string, si os.FileInfo) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".seed-*")
	if err != nil {
		return fmt.Errorf("seed %s: %w", dst, err)
	}
	_, werr := tmp.Write(data)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chtimes(tmp.Name(), si.ModTime(), si.ModTime())
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), dst)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("seed %s: %w", dst, werr)
	}
	return nil
}

// Sanitize is Claude Code's directory name for a project path under
// ~/.claude/projects: every character but ASCII letters and digits
// becomes '-' (/home/u/p -> -home-u-p).
func Sanitize(path string) string {
	b := []byte(path)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

func gitRoot(dir string) string {
	for d := dir; d != "" && d != "/"; d = filepath.Dir(d) {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d
		}
	}
	return ""
}

// maxSettings bounds what is read of a settings file.
const maxSettings = 4 << 20

func readSmall(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxSettings {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", path, maxSettings)
	}
	return os.ReadFile(path)
}
