package gitdirs

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Entry is one deny_write pattern for the run and what names it.
type Entry struct {
	// Pattern is "~/..." beneath the home, else an absolute path; a
	// directory's ends in "/".
	Pattern string
	// By is the git directory (or .git file) it belongs to and what that
	// is: "~/p/.git/modules/sub (submodule sub)".
	By string
}

// Result is what Scan found.
type Result struct {
	Entries []Entry
	// Notes say what the scan could not cover, for the user.
	Notes []string
	// Dirs is how many directories of the project the walk read.
	Dirs int
	// GitDirs are the git directories found, absolute and resolved.
	GitDirs []string
}

// Options are where to look.
type Options struct {
	ProjectRoot string
	Home        string
	// MaxDirs bounds the project walk; 0 is DefaultMaxDirs.
	MaxDirs int
}

// DefaultMaxDirs bounds the walk of the project tree (BenchmarkScan: the
// walk costs what reading the directories costs).
const DefaultMaxDirs = 50000

// skipDirs are trees the walk does not enter: package managers' (huge,
// and their packages ship without .git).
var skipDirs = map[string]bool{"node_modules": true}

// perGitDir are the files of a git directory that make git run code
// (hooks, config: core.fsmonitor, core.hooksPath, aliases, filters;
// config.worktree with extensions.worktreeConfig) or read another git
// directory's config and hooks instead (commondir).
var perGitDir = []string{"hooks/", "config", "config.worktree", "commondir"}

// Scan lists the deny_write entries for the git directories of the
// repository holding the project root and of every .git below it. It
// reads only, as the caller (the user); what it cannot read it skips.
func Scan(o Options) Result {
	if o.MaxDirs <= 0 {
		o.MaxDirs = DefaultMaxDirs
	}
	s := &scanner{o: o, seen: map[string]bool{}, pats: map[string]bool{}}
	if o.ProjectRoot == "" {
		return s.r
	}
	root := filepath.Clean(o.ProjectRoot)
	// The repository the project is in, when the root is below its top.
	for d := root; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			s.dotGit(filepath.Join(d, ".git"), "the project's repository")
			break
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	s.walk(root)
	// A hooks directory the user's own git config names (absolute or
	// "~/"): the config is a default deny_write entry, the hooks are not.
	if o.Home != "" {
		for _, cfg := range []string{filepath.Join(o.Home, ".gitconfig"), filepath.Join(o.Home, ".config", "git", "config")} {
			if hp := hooksPath(cfg); hp != "" {
				if dir := s.resolveHooks("", cfg, hp); dir != "" {
					s.add(dir+"/", s.pretty(cfg)+" core.hooksPath")
				}
			}
		}
	}
	return s.r
}

type scanner struct {
	o    Options
	r    Result
	seen map[string]bool // git directories handled
	pats map[string]bool
}

func (s *scanner) walk(root string) {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: git cannot use it either
		}
		if d.Name() == ".git" && p != root {
			s.dotGit(p, "nested repository "+s.pretty(filepath.Dir(p)))
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if p != root && (skipDirs[d.Name()] || s.toolState(p, d.Name())) {
			return filepath.SkipDir
		}
		s.r.Dirs++
		if s.r.Dirs > s.o.MaxDirs {
			s.r.Notes = append(s.r.Notes, fmt.Sprintf("the project has more than %d directories: git directories beyond them are not protected", s.o.MaxDirs))
			return filepath.SkipAll
		}
		return nil
	})
	_ = err // WalkDir only returns what the callback returns
}

// toolState says whether p is a dot-directory directly in the home
// (~/.cache, ~/.pyenv, ~/.rustup): tool state, not projects, and most of
// the directories of a home (a run started in the home walked 16,000 of
// them in 0.4-0.9 s on the CI host, 12,000 of them in ~/.pyenv).
func (s *scanner) toolState(p, name string) bool {
	return s.o.Home != "" && strings.HasPrefix(name, ".") && filepath.Dir(p) == filepath.Clean(s.o.Home)
}

// dotGit handles a .git: a directory is a git directory; a file points
// at one ("gitdir: ..."), and is itself protected, since rewriting it
// points git at a directory the sandbox made.
func (s *scanner) dotGit(p, what string) {
	fi, err := os.Lstat(p)
	if err != nil {
		return
	}
	switch {
	case fi.IsDir():
		s.gitDir(p, what)
	case fi.Mode().IsRegular():
		target := readGitFile(p)
		if target == "" {
			s.add(p, s.pretty(p)+" (a .git file)")
			return
		}
		s.add(p, s.pretty(p)+" (points at "+s.pretty(target)+")")
		s.gitDir(target, what)
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			s.add(p, s.pretty(p)+" (a link)")
			return
		}
		s.add(p, s.pretty(p)+" (a link to "+s.pretty(target)+")")
		s.dotGit(target, what)
	}
}

// gitDir adds the entries of one git directory and goes on to the git
// directories it holds: submodules' (modules/, at any depth, since a
// submodule's name may contain "/" and submodules have their own) and
// linked worktrees' (worktrees/).
func (s *scanner) gitDir(g, what string) {
	if r, err := filepath.EvalSymlinks(g); err == nil {
		g = r // patterns are compared with resolved paths
	}
	g = filepath.Clean(g)
	if s.seen[g] {
		return
	}
	if fi, err := os.Stat(g); err != nil || !fi.IsDir() {
		return
	}
	s.seen[g] = true
	s.r.GitDirs = append(s.r.GitDirs, g)
	by := s.pretty(g) + " (" + what + ")"
	for _, f := range perGitDir {
		p := filepath.Join(g, f)
		if strings.HasSuffix(f, "/") {
			p += "/"
		}
		s.add(p, by)
	}
	cfg := filepath.Join(g, "config")
	if hp := hooksPath(cfg); hp != "" {
		dir := s.resolveHooks(g, cfg, hp)
		switch {
		case dir == "":
			s.r.Notes = append(s.r.Notes, fmt.Sprintf("%s: core.hooksPath %q: not protected (relative to a work tree aigate cannot tell)", s.pretty(cfg), hp))
		case within(dir, s.o.ProjectRoot):
			// Hooks kept in the project (.husky/, .githooks/) are its
			// source, which the tool is expected to change, as a
			// Makefile: protecting them would only break the tool's
			// install of them (husky writes .husky/_ at npm install).
			s.r.Notes = append(s.r.Notes, fmt.Sprintf("%s: core.hooksPath %s is in the project: its hooks are project files, not protected", s.pretty(cfg), s.pretty(dir)))
		default:
			s.add(dir+"/", by+" core.hooksPath")
		}
	}
	if c := readLine(filepath.Join(g, "commondir")); c != "" {
		if !filepath.IsAbs(c) {
			c = filepath.Join(g, c)
		}
		s.gitDir(c, "common directory of "+s.pretty(g))
	}
	s.modules(filepath.Join(g, "modules"), "", 0)
	if ents, err := os.ReadDir(filepath.Join(g, "worktrees")); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				s.gitDir(filepath.Join(g, "worktrees", e.Name()), "worktree "+e.Name())
			}
		}
	}
}

// modules walks a modules/ directory: a directory with a HEAD is a
// submodule's git directory, any other holds more of a name with "/".
func (s *scanner) modules(dir, name string, depth int) {
	if depth > 16 {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		n := e.Name()
		if name != "" {
			n = name + "/" + n
		}
		if _, err := os.Lstat(filepath.Join(p, "HEAD")); err == nil {
			s.gitDir(p, "submodule "+n)
			continue
		}
		s.modules(p, n, depth+1)
	}
}

// resolveHooks makes a core.hooksPath absolute: git reads a relative
// one from the top of the work tree, which for a ".git" directory is its
// parent and otherwise core.worktree (submodules set it). "" when
// unknown.
func (s *scanner) resolveHooks(g, cfg, hp string) string {
	if rest, ok := strings.CutPrefix(hp, "~/"); ok {
		if s.o.Home == "" {
			return ""
		}
		return filepath.Join(s.o.Home, rest)
	}
	if filepath.IsAbs(hp) {
		return filepath.Clean(hp)
	}
	top := ""
	if g == "" {
		return ""
	}
	if filepath.Base(g) == ".git" {
		top = filepath.Dir(g)
	} else if wt := configValue(cfg, "core", "worktree"); wt != "" {
		top = wt
		if !filepath.IsAbs(wt) {
			top = filepath.Join(g, wt)
		}
	}
	if top == "" {
		return ""
	}
	return filepath.Join(top, hp)
}

func (s *scanner) add(p, by string) {
	pat := s.pattern(p)
	if s.pats[pat] {
		return
	}
	s.pats[pat] = true
	s.r.Entries = append(s.r.Entries, Entry{Pattern: pat, By: by})
}

// pattern is p beneath the home as "~/...", else absolute; a trailing
// "/" is kept.
func (s *scanner) pattern(p string) string {
	dir := strings.HasSuffix(p, "/")
	p = filepath.Clean(p)
	if s.o.Home != "" {
		if rel, err := filepath.Rel(s.o.Home, p); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			p = "~/" + filepath.ToSlash(rel)
		}
	}
	if dir {
		p += "/"
	}
	return p
}

func (s *scanner) pretty(p string) string { return s.pattern(p) }

// within says whether p is dir or beneath it.
func within(p, dir string) bool {
	if dir == "" {
		return false
	}
	rel, err := filepath.Rel(filepath.Clean(dir), p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// maxSmall bounds what is read of a .git file, commondir or config.
const maxSmall = 1 << 20

func readSmall(p string) []byte {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	buf := make([]byte, maxSmall)
	n, _ := f.Read(buf)
	return buf[:n]
}

// readLine is a file's first line, trimmed.
func readLine(p string) string {
	line, _, _ := bytes.Cut(readSmall(p), []byte("\n"))
	return strings.TrimSpace(string(line))
}

// readGitFile is the git directory a .git file names, absolute.
func readGitFile(p string) string {
	target, ok := strings.CutPrefix(readLine(p), "gitdir:")
	if !ok {
		return ""
	}
	target = strings.TrimSpace(target)
	if target == "" {
		return ""
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(p), target)
	}
	return target
}

func hooksPath(cfg string) string { return configValue(cfg, "core", "hookspath") }

// configValue is the last value of section.key (no subsection) in a git
// config file.
func configValue(cfg, section, key string) string {
	var val string
	for _, v := range parseConfig(cfg) {
		if v.section == section && v.sub == "" && v.key == key {
			val = v.value
		}
	}
	return val
}
