package landlock

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// Filesystem access rights (include/uapi/linux/landlock.h), defined here
// too so that the plan builds on every OS.
const (
	AccessWriteFile  uint64 = 1 << 1
	AccessRemoveDir  uint64 = 1 << 4
	AccessRemoveFile uint64 = 1 << 5
	AccessMakeChar   uint64 = 1 << 6
	AccessMakeDir    uint64 = 1 << 7
	AccessMakeReg    uint64 = 1 << 8
	AccessMakeSock   uint64 = 1 << 9
	AccessMakeFifo   uint64 = 1 << 10
	AccessMakeBlock  uint64 = 1 << 11
	AccessMakeSym    uint64 = 1 << 12
	AccessRefer      uint64 = 1 << 13 // ABI 2
	AccessTruncate   uint64 = 1 << 14 // ABI 3

	// AccessWrite is every right that changes the filesystem. Reads and
	// executions are aigate's policy's business, never Landlock's: a
	// domain handling them would need a rule for every file a tool reads.
	AccessWrite = AccessWriteFile | AccessRemoveDir | AccessRemoveFile | AccessMakeChar |
		AccessMakeDir | AccessMakeReg | AccessMakeSock | AccessMakeFifo | AccessMakeBlock |
		AccessMakeSym | AccessRefer | AccessTruncate

	// accessFile are the rights of AccessWrite that a rule on a file (not
	// a directory) may carry.
	accessFile = AccessWriteFile | AccessTruncate
)

// Scopes (ABI 6).
const (
	ScopeAbstractUnix uint64 = 1 << 0
	ScopeSignal       uint64 = 1 << 1
)

// Rule grants Access beneath Path (on Path itself when it is a file).
type Rule struct {
	Path   string
	Access uint64
}

// Ruleset is a domain to enter: the rights it handles (everything handled
// and not granted by a rule is denied) and the scopes it closes.
type Ruleset struct {
	HandledFS uint64
	Scoped    uint64
	Rules     []Rule
}

// Options is what a sandbox asks of Landlock (the helper gets it from
// `aigate run` through its environment).
type Options struct {
	// Required makes Restrict's failure fatal: the command does not run
	// when the kernel cannot confine it (fanotify, where no other hook
	// keeps it from the user's other processes).
	Required bool `json:"required,omitempty"`
	// AbstractUnix lets the sandbox reach abstract unix sockets outside
	// it (the policy's allow_unix lists one); otherwise they are scoped.
	AbstractUnix bool `json:"abstract_unix,omitempty"`
	// Home, when set, is made read-only except beneath Writable.
	Home string `json:"home,omitempty"`
	// Writable are the paths beneath Home that stay writable (the
	// project, temp directories, tool state).
	Writable []string `json:"writable,omitempty"`
	// Fixed are tool state directories (beneath Home, or absolute) whose
	// own entries are fixed: in one, files and subdirectories may be
	// created and written, never removed, renamed, symlinked or linked in
	// from another directory; beneath each subdirectory it has when the
	// domain is made, everything may be written. A deny_write file there
	// (~/.claude/settings.json) then cannot be replaced by a rename, which
	// the fanotify backend would see only after the fact.
	Fixed []string `json:"fixed,omitempty"`
	// Sealed are directories beneath a Fixed one (beneath Home, or
	// absolute) in which no directory can be made, at any depth, except
	// beneath Open: a sealed directory gets no right of its own, and the
	// Fixed directory above it loses AccessMakeDir (Landlock grants a
	// right to a whole tree), which its other existing subdirectories
	// keep. Files can still be made and written in it and in its
	// subdirectories (the kernel backend's rule refuses that with an
	// event), nothing removed, renamed, linked or symlinked. For
	// ~/.claude/projects: no sandbox makes another project's directory
	// (and its auto memory), present or future.
	Sealed []string `json:"sealed,omitempty"`
	// Open are directories beneath a Sealed one granted AccessFixed: the
	// run's own project directory in ~/.claude/projects, where Claude
	// Code writes its transcripts.
	Open []string `json:"open,omitempty"`
	// Create are directories of Writable to create (0700) before the
	// domain is entered when they are missing: the home is read-only
	// afterwards, and a tool that finds no ~/.cache could not make one.
	Create []string `json:"create,omitempty"`
	// Keep are trees (beneath Home, or absolute) that no Writable entry
	// may grant more than AccessFixed beneath: the user's caches that are
	// deny_write. A Writable entry (beneath the home, not the home
	// itself) above one is granted as a Fixed directory is, except that
	// of its existing subdirectories the one on the way to a kept tree is
	// treated the same way again, and the kept tree gets nothing of its
	// own. Beneath it the sandbox can then create and write files (which
	// the fanotify backend's directory marks see and refuse) but never
	// link, rename or symlink anything in or out, so the backend need not
	// protect each file by inode (Covered).
	Keep []string `json:"keep,omitempty"`
	// Covered are the trees of Keep that aigate run told the agent this
	// domain covers (Covered): the helper refuses to run the command when
	// one no longer is.
	Covered []string `json:"covered,omitempty"`
	// ReadOnly are absolute directories outside the home that get no
	// write right, as the home: the user's systemd manager's runtime unit
	// directories (/run/user/UID/systemd), which it loads outside any
	// sandbox. Their ancestors are split as the home's are, so a new
	// entry cannot be made directly in any of them either (a missing
	// ReadOnly directory cannot be made). Only with a home; an entry
	// within the home or holding it is ignored, and one beneath a shared
	// temp directory or a Writable entry is not protected (Plan).
	ReadOnly []string `json:"read_only,omitempty"`
}

// AccessFixed are the rights of a Fixed directory: AccessWrite but
// removing, renaming away or over, symlinking, and linking or renaming in
// from another directory.
const AccessFixed = AccessWrite &^ (AccessRemoveFile | AccessRemoveDir | AccessRefer | AccessMakeSym)

// DefaultCreate are the directories of DefaultWritable that aigate makes
// when missing: the XDG cache and state directories and Claude Code's,
// which tools expect to be able to create. The others (~/go, ~/.npm)
// exist wherever the tool has run outside once.
var DefaultCreate = []string{".cache", ".cache/aigate/xdg", ".local/state", ".claude",
	".claude/projects", ".claude/sessions", ".claude/telemetry", ".claude/backups", ".claude/plugins",
	".claude/todos", ".claude/shell-snapshots", ".claude/statsig", ".claude/file-history", ".claude/session-env",
	// where Claude Code 2.1.332 makes directories in a session: made
	// first, since a sealed ~/.claude/projects (Options.Sealed) leaves
	// ~/.claude itself without the right to make one
	".claude/tasks", ".claude/plans", ".claude/debug", ".claude/cache", ".claude/jobs",
	// protected by default deny_write rules: run makes these before the
	// sandbox exists (the LSM backend refuses their creation inside; the
	// fanotify backend watches them from the start)
	".claude/plugins/cache", ".claude/plugins/data",
	".claude/skills", ".claude/commands", ".claude/agents", ".claude/hooks", ".claude/rules", ".claude/output-styles",
	".claude/agent-memory", ".claude/daemon", ".claude/ide"}

// DefaultFixed is the tool state whose own entries are fixed (Options.Fixed):
// Claude Code writes and creates files directly in ~/.claude
// (.last-cleanup, history.jsonl, .credentials.json, in place) and removes
// and renames files only in its subdirectories (measured with strace,
// 2.1.332), whose usual names DefaultCreate makes first, so that those
// made inside the sandbox do not lack the right to remove.
var DefaultFixed = []string{".claude"}

// DefaultWritable is the tool state beneath the home that the tools
// aigate is run with write, relative to the home. Measured with strace
// (2026-12, fresh home): Claude Code 2.1 writes ~/.claude and
// ~/.claude.json; go build/vet ~/.cache/go-build and
// ~/.config/go/telemetry (not ~/.config/go/env: `go env -w` there steers
// every later go command); npm ~/.npm; pip in a venv and git commit in the
// project nothing in the home. Add the histories of shells and REPLs.
// None of them holds code that the user's shell, git or desktop runs by
// itself; the caches are trusted by the tools that read them
// (docs/threat-model.md). Of ~/.cache only the sandboxes' own part is
// here: tools outside run what ~/.cache holds (pre-commit's hook
// environments, corepack's package managers, Claude Code's staged
// updates, Playwright's browsers), and run points XDG_CACHE_HOME at
// ~/.cache/aigate/xdg, which well-behaved tools follow. The user's go,
// pip, cargo, gradle and maven caches are not here either: the sandbox's
// tools get their own in ~/.cache/aigate (run adds the user's only for a
// tool in shared_caches, policy.CacheTool.SharedWritable). Where the
// user's XDG_CONFIG_HOME and XDG_STATE_HOME move .config and .local/state,
// run adds them there too (run.xdgWritable).
var DefaultWritable = []string{
	".cache/aigate",
	".claude.json",
	".claude.json.backup",
	".npm",
	"go",
	".config/go/telemetry",
	".local/state",
	".bash_history",
	".python_history",
	".node_repl_history",
	".lesshst",
}

// fsRights are the filesystem rights each ABI knows (index: ABI).
func fsRights(abi int) uint64 {
	switch {
	case abi <= 0:
		return 0
	case abi == 1:
		return AccessWrite &^ (AccessRefer | AccessTruncate)
	case abi == 2:
		return AccessWrite &^ AccessTruncate
	}
	return AccessWrite
}

// Effective is rs as a kernel of the given ABI can enforce it: the rights
// and scopes it does not know are dropped. Before ABI 6 a ruleset must
// handle some file access to exist, so one that handles none gets the
// right to mknod a block device (which an unprivileged process never has)
// granted everywhere, with REFER: a domain that handles any file access
// refuses renames and links across directories unless a rule grants REFER
// (ABI 1 cannot grant it: there, such a rename fails with EXDEV and mv
// falls back to copying).
func (rs Ruleset) Effective(abi int) Ruleset {
	out := Ruleset{HandledFS: rs.HandledFS & fsRights(abi)}
	if abi >= 6 {
		out.Scoped = rs.Scoped
	}
	rules := rs.Rules
	if rs.HandledFS == 0 && abi < 6 {
		out.HandledFS = (AccessMakeBlock | AccessRefer) & fsRights(abi)
		rules = []Rule{{Path: "/", Access: out.HandledFS}}
	}
	for _, r := range rules {
		if a := r.Access & out.HandledFS; a != 0 {
			out.Rules = append(out.Rules, Rule{Path: r.Path, Access: a})
		}
	}
	return out
}

// absIn is p absolute (relative ones beneath home) and clean.
func absIn(home, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(home, p)
	}
	return filepath.Clean(p)
}

// within reports whether path is dir or beneath it (both clean).
func within(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}

// narrowed are the rules of a Writable directory w above kept trees
// (Options.Keep): AccessFixed on w; AccessWrite on each existing
// subdirectory that holds no kept tree; the same again on one on the way
// to one; AccessFixed alone on a kept tree (~/.npm as a whole), so that a
// write there reaches the backend, which refuses it with an event. A
// missing w gets nothing: a tool cannot make it (the home is read-only).
func narrowed(w string, keep []string, l DirLister) []Rule {
	entries, err := l.ReadDir(w)
	if err != nil {
		return nil
	}
	out := []Rule{{Path: w, Access: AccessFixed}}
	if slices.Contains(keep, w) {
		return out // nothing more beneath a kept tree
	}
	for _, e := range entries {
		if !e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
			continue // files in w keep AccessFixed; symlinks: see Plan
		}
		sub := filepath.Join(w, e.Name())
		if slices.ContainsFunc(keep, func(k string) bool { return within(k, sub) }) {
			out = append(out, narrowed(sub, keep, l)...)
			continue
		}
		out = append(out, Rule{Path: sub, Access: AccessWrite})
	}
	return out
}

// Resolver resolves a path's symlinks (filepath.EvalSymlinks), so that
// Covered can be tested without a filesystem.
type Resolver func(path string) (string, error)

// Covered reports whether the domain rs (as Effective made it for the
// running kernel) leaves the sandbox no more than AccessFixed anywhere in
// tree: no hard link, rename or symlink into, out of or within it, no
// removal. Rules and tree are compared where their symlinks lead, as the
// kernel opens rule paths. A rule whose path does not resolve counts as
// beneath everything (fail closed); so does a tree that does not resolve.
// Reparenting (REFER) is refused by any domain that handles file access
// unless a rule grants it, also where the ABI does not know it.
func Covered(rs Ruleset, tree string, resolve Resolver) bool {
	handled := rs.HandledFS & AccessWrite
	if handled == 0 {
		return false
	}
	real, err := resolve(tree)
	if err != nil {
		return false
	}
	g := AccessWrite &^ handled &^ AccessRefer
	for _, r := range rs.Rules {
		rp, err := resolve(r.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the kernel skips a rule whose path is missing
		}
		if err != nil {
			return false
		}
		if within(real, rp) || within(rp, real) {
			g |= r.Access
		}
	}
	return g&AccessWrite&^AccessFixed == 0
}

// DirLister lists a directory (os.ReadDir) and tells whether a path is a
// shared temporary directory (sticky and writable by all). Plan uses it so
// that it can be tested without a filesystem.
type DirLister interface {
	ReadDir(dir string) ([]fs.DirEntry, error)
	IsTempDir(dir string) bool
}

// Plan turns opts into a ruleset. Without a home it handles no file
// access: the domain only fences the process off from those outside it
// (see Effective for kernels before ABI 6). With a home, every write is
// handled and granted beneath everything except the home and
// opts.ReadOnly: beneath each entry of each of their ancestors that is
// none of them nor on the way to one, and beneath opts.Writable. A shared
// temp directory among the ancestors stays writable as a whole (Landlock
// cannot grant creating files in /tmp without granting it beneath
// /tmp/home), so a home or a ReadOnly directory beneath one is not
// protected, nor is a ReadOnly directory that a Writable entry holds;
// Plan reports any of that with protected false.
func Plan(opts Options, l DirLister) (rs Ruleset, protected bool) {
	rs.Scoped = ScopeSignal
	if !opts.AbstractUnix {
		rs.Scoped |= ScopeAbstractUnix
	}
	home := filepath.Clean(opts.Home)
	if opts.Home == "" || !filepath.IsAbs(home) || home == "/" {
		return rs, false
	}
	rs.HandledFS = AccessWrite
	kept := append([]string{home}, readOnly(opts.ReadOnly, home)...)
	sp := splitter{kept: kept, l: l, protected: true}
	sp.split("/")
	rs.Rules = sp.rules
	protected = sp.protected
	var keep []string
	for _, k := range opts.Keep {
		keep = append(keep, absIn(home, k))
	}
	for _, w := range opts.Writable {
		w = absIn(home, w)
		if slices.ContainsFunc(kept[1:], func(k string) bool { return within(k, w) || within(w, k) }) {
			protected = false // its rule grants (part of) a ReadOnly directory again
		}
		if w != home && strings.HasPrefix(w, home+"/") && slices.ContainsFunc(keep, func(k string) bool { return within(k, w) }) {
			rs.Rules = append(rs.Rules, narrowed(w, keep, l)...)
			continue
		}
		rs.Rules = append(rs.Rules, Rule{Path: w, Access: AccessWrite})
	}
	for _, f := range opts.Fixed {
		if !filepath.IsAbs(f) {
			f = filepath.Join(home, f)
		}
		f = filepath.Clean(f)
		entries, err := l.ReadDir(f)
		if err != nil {
			continue // missing: nothing to grant, the tool cannot make it
		}
		var sealed []string
		for _, d := range opts.Sealed {
			if d = absIn(home, d); filepath.Dir(d) == f {
				sealed = append(sealed, d)
			}
		}
		access := AccessFixed
		if len(sealed) > 0 {
			access &^= AccessMakeDir
		}
		rs.Rules = append(rs.Rules, Rule{Path: f, Access: access})
		for _, e := range entries {
			sub := filepath.Join(f, e.Name())
			if !e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
				continue
			}
			if !slices.Contains(sealed, sub) {
				rs.Rules = append(rs.Rules, Rule{Path: sub, Access: AccessWrite})
				continue
			}
			for _, o := range opts.Open {
				if o = absIn(home, o); filepath.Dir(o) == sub {
					rs.Rules = append(rs.Rules, Rule{Path: o, Access: AccessFixed})
				}
			}
		}
	}
	return rs, protected
}

// readOnly are the entries of ro that Plan protects: absolute, cleaned,
// outside home and not holding it, none beneath another.
func readOnly(ro []string, home string) []string {
	var out []string
	for _, d := range ro {
		d = filepath.Clean(d)
		if !filepath.IsAbs(d) || within(d, home) || within(home, d) {
			continue
		}
		out = append(out, d)
	}
	return slices.DeleteFunc(out, func(d string) bool {
		return slices.ContainsFunc(out, func(o string) bool { return o != d && within(d, o) })
	})
}

// splitter grants the write rights beneath everything but the kept
// directories (the home and the ReadOnly ones): beneath each entry of
// each of their ancestors that is not on the way to one of them.
type splitter struct {
	kept      []string
	l         DirLister
	rules     []Rule
	protected bool
}

// split grants the entries of dir, an ancestor of a kept directory, that
// lead to none, then splits the ancestors among its entries the same way.
func (sp *splitter) split(dir string) {
	if dir != "/" && sp.l.IsTempDir(dir) {
		sp.rules = append(sp.rules, Rule{Path: dir, Access: AccessWrite})
		sp.protected = false
		return
	}
	entries, err := sp.l.ReadDir(dir)
	if err != nil {
		// Unlistable: its other entries stay read-only, which is
		// safe; the tool may find one of them not writable.
		entries = nil
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		// A symlink is skipped: a write through it lands where it
		// points, governed by that place's own rules, and granting
		// beneath its target could grant a kept directory itself.
		if sp.onTheWay(p) || e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		access := AccessWrite
		if !e.IsDir() {
			access = accessFile
		}
		sp.rules = append(sp.rules, Rule{Path: p, Access: access})
	}
	// The next ancestors beneath dir, listed or not: a missing one's
	// parent is split all the same, so that nothing can make it.
	var next []string
	for _, k := range sp.kept {
		if k == dir || !within(k, dir) {
			continue
		}
		rest := strings.TrimPrefix(strings.TrimPrefix(k, dir), "/")
		sub := filepath.Join(dir, strings.SplitN(rest, "/", 2)[0])
		if sub != k && !slices.Contains(next, sub) {
			next = append(next, sub)
		}
	}
	slices.Sort(next)
	for _, sub := range next {
		sp.split(sub)
	}
}

// onTheWay reports whether p is a kept directory or one of its ancestors.
func (sp *splitter) onTheWay(p string) bool {
	return slices.ContainsFunc(sp.kept, func(k string) bool { return within(k, p) })
}
