package darwin

import (
	"errors"
	"io/fs"
	"path"
	"strings"

	"github.com/aigate-dev/aigate/internal/policy"
)

// Expansion bounds. A home directory holds ~/Library with hundreds of
// thousands of entries; the walk is breadth-first so that shallow files (where
// secrets usually are) are found before the bound is reached deep in a tree.
const (
	DefaultMaxEntries = 200_000
	DefaultMaxDepth   = 16
)

// ExpandOptions says where name rules are searched.
type ExpandOptions struct {
	ProjectRoot string   // walked first
	Home        string   // walked second, skipping ProjectRoot
	ExecDirs    []string // PATH directories, one level deep, for exec names
	MaxEntries  int      // 0 means DefaultMaxEntries
	MaxDepth    int      // 0 means DefaultMaxDepth
}

// Expansion is the concrete result of matching the rule sets against the
// file system at one moment. Files created later are not in it: ACLs have no
// notion of a name pattern.
type Expansion struct {
	Targets    []Target
	Missing    []string // Paths entries that did not exist (nothing to protect yet)
	Visited    int      // directory entries examined
	Truncated  bool     // MaxEntries was reached; some directories were not read
	SkippedAt  string   // first directory left unread because of the bound
	Unreadable []string // directories that could not be listed (first 20)
	// LinksOut are links in the project matched by a rule whose target
	// lies outside the home and the project: no entry is put there (the
	// link could have been planted by an earlier session to make aigate
	// touch a system file), so the rule is not enforced on it.
	LinksOut []string
}

// Expand turns the Paths of each FileSet into existing targets and the name
// rules (Names, NamePrefix, NameSuffix) into the paths that match them now.
// fsys is rooted at "/" (os.DirFS("/") in production, fstest.MapFS in tests).
func Expand(fsys fs.FS, c *policy.Compiled, opt ExpandOptions) (*Expansion, error) {
	if opt.MaxEntries <= 0 {
		opt.MaxEntries = DefaultMaxEntries
	}
	if opt.MaxDepth <= 0 {
		opt.MaxDepth = DefaultMaxDepth
	}
	e := &expander{fsys: fsys, opt: opt, out: &Expansion{}, seen: map[targetKey]bool{}}
	sets := []struct {
		a policy.Access
		s *policy.FileSet
	}{{policy.AccessRead, &c.Read}, {policy.AccessWrite, &c.Write}, {policy.AccessExec, &c.Exec}}
	for _, s := range sets {
		e.sets = append(e.sets, accessSet{s.a, s.s})
		for _, p := range s.s.Paths {
			// The entry goes on what the name reaches: a ~/.ssh that
			// is a link is still the keys.
			real, dir, err := e.resolve(p.Value)
			if errors.Is(err, errLinkOut) {
				continue // in LinksOut, reported
			}
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					e.unreadable(p.Value)
				}
				e.out.Missing = append(e.out.Missing, p.Value)
				continue
			}
			e.add(Target{Path: real, Dir: dir, Access: s.a, Rule: p.Rule})
		}
	}
	if e.hasNameRules() {
		if opt.ProjectRoot != "" {
			e.walk(opt.ProjectRoot, "", opt.MaxDepth, false)
		}
		if opt.Home != "" && opt.Home != opt.ProjectRoot {
			e.walk(opt.Home, opt.ProjectRoot, opt.MaxDepth, true)
		}
		for _, d := range opt.ExecDirs {
			e.walk(d, "", 1, true)
		}
	}
	SortTargets(e.out.Targets)
	return e.out, nil
}

type accessSet struct {
	a policy.Access
	s *policy.FileSet
}

type targetKey struct {
	path string
	a    policy.Access
}

type expander struct {
	fsys fs.FS
	opt  ExpandOptions
	sets []accessSet
	out  *Expansion
	seen map[targetKey]bool
}

func (e *expander) hasNameRules() bool {
	for _, s := range e.sets {
		if len(s.s.Names)+len(s.s.NamePrefix)+len(s.s.NameSuffix) > 0 {
			return true
		}
	}
	return false
}

func (e *expander) add(t Target) {
	k := targetKey{t.Path, t.Access}
	if e.seen[k] {
		return
	}
	e.seen[k] = true
	e.out.Targets = append(e.out.Targets, t)
}

func (e *expander) unreadable(p string) {
	if len(e.out.Unreadable) < 20 {
		e.out.Unreadable = append(e.out.Unreadable, p)
	}
}

// walk visits root breadth-first down to maxDepth levels, not entering skip.
// Symbolic links are matched by name but never followed into.
//
// Outside the project, a directory that others cannot search (mode without
// o+x: ~/Documents, ~/Desktop, ~/Downloads, ~/Library are 0700) is not
// entered: the sandbox user cannot reach anything in it, and listing it as
// root would make macOS ask the user for the terminal's access to Documents
// or Desktop (TCC). The directories leading to the project are entered,
// since they get "allow search".
func (e *expander) walk(root, skip string, maxDepth int, outside bool) {
	type item struct {
		dir   string
		depth int
	}
	queue := []item{{root, 0}}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if e.out.Visited >= e.opt.MaxEntries {
			e.out.Truncated = true
			if e.out.SkippedAt == "" {
				e.out.SkippedAt = it.dir
			}
			return
		}
		ents, err := fs.ReadDir(e.fsys, rel(it.dir))
		if err != nil {
			// Root-owned or TCC-protected directories (~/Library/Mail...)
			// cannot be listed; what we cannot list the sandbox user
			// cannot list either.
			e.unreadable(it.dir)
			continue
		}
		for _, d := range ents {
			if e.out.Visited >= e.opt.MaxEntries {
				e.out.Truncated = true
				if e.out.SkippedAt == "" {
					e.out.SkippedAt = it.dir
				}
				return
			}
			e.out.Visited++
			p := path.Join(it.dir, d.Name())
			if p == skip {
				continue
			}
			if d.Type()&fs.ModeSymlink != 0 {
				e.matchLink(p, d.Name())
				continue
			}
			isDir := d.IsDir()
			blocked := e.match(p, d.Name(), isDir)
			if isDir && !blocked && it.depth+1 < maxDepth && e.enter(p, outside) {
				queue = append(queue, item{p, it.depth + 1})
			}
		}
	}
}

// enter reports whether the walk goes into directory p. Inside the project
// (outside == false) every directory is; outside it only those the sandbox
// user could search, or that lead to the project.
func (e *expander) enter(p string, outside bool) bool {
	if !outside || strings.HasPrefix(e.opt.ProjectRoot, p+"/") {
		return true
	}
	fi, err := fs.Lstat(e.fsys, rel(p))
	return err == nil && fi.Mode().Perm()&0o001 != 0
}

// matchLink matches a symbolic link by its name and puts the entry on what
// it points to, if that exists: a .env that is a link to the real file
// protects the real file. A dangling link has nothing to protect.
func (e *expander) matchLink(p, name string) {
	for _, s := range e.sets {
		r, ok := s.s.MatchName(name)
		if !ok {
			continue
		}
		real, dir, err := e.resolve(p)
		if err != nil {
			continue
		}
		e.add(Target{Path: real, Dir: dir, Access: s.a, Rule: r})
	}
}

// resolve is ResolvePath, except that a link inside the project that
// leads outside the home and the project is refused (and recorded in
// LinksOut). The project is the one place the sandbox user can write, so
// a link there may have been planted by an earlier session to make aigate
// put entries on a system file; links elsewhere (Homebrew's bin links into
// its Cellar, a ~/.ssh moved to another volume) are yours, and a deny
// entry goes on what they reach.
func (e *expander) resolve(p string) (string, bool, error) {
	real, dir, err := ResolvePath(e.fsys, p)
	if err != nil || real == path.Clean(p) {
		return real, dir, err
	}
	proj := e.opt.ProjectRoot
	if proj == "" || !strings.HasPrefix(p, proj+"/") {
		return real, dir, nil
	}
	for _, top := range []string{e.opt.Home, proj} {
		if top != "" && (real == top || strings.HasPrefix(real, top+"/")) {
			return real, dir, nil
		}
	}
	if len(e.out.LinksOut) < 20 {
		e.out.LinksOut = append(e.out.LinksOut, p+" -> "+real)
	}
	return "", false, errLinkOut
}

var errLinkOut = errors.New("link in the project leads outside the home and the project")

// match records a target for every set that name matches and reports
// whether the entry is a directory denied for reading, whose contents the
// sandbox user cannot reach and so need not be searched.
func (e *expander) match(p, name string, isDir bool) (blocked bool) {
	for _, s := range e.sets {
		if r, ok := s.s.MatchName(name); ok && !excepted(s.s, p) {
			e.add(Target{Path: p, Dir: isDir, Access: s.a, Rule: r})
			if isDir && s.a == policy.AccessRead {
				blocked = true
			}
		}
	}
	return blocked
}

// excepted reports whether s's exceptions (except_read) cancel a name
// rule's match at p, as policy.FileSet.Match decides.
func excepted(s *policy.FileSet, p string) bool {
	if s.Except == nil {
		return false
	}
	_, ok := s.Except.Match(p)
	return ok
}

// rel turns an absolute path into an fs.FS name rooted at "/".
func rel(p string) string {
	p = strings.TrimPrefix(path.Clean(p), "/")
	if p == "" {
		return "."
	}
	return p
}
