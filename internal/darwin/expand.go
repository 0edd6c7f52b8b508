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
			fi, err := fs.Stat(fsys, rel(p.Value))
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					e.unreadable(p.Value)
				}
				e.out.Missing = append(e.out.Missing, p.Value)
				continue
			}
			e.add(Target{Path: p.Value, Dir: fi.IsDir(), Access: s.a, Rule: p.Rule})
		}
	}
	if e.hasNameRules() {
		if opt.ProjectRoot != "" {
			e.walk(opt.ProjectRoot, "", opt.MaxDepth)
		}
		if opt.Home != "" && opt.Home != opt.ProjectRoot {
			e.walk(opt.Home, opt.ProjectRoot, opt.MaxDepth)
		}
		for _, d := range opt.ExecDirs {
			e.walk(d, "", 1)
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
func (e *expander) walk(root, skip string, maxDepth int) {
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
			isDir := d.IsDir()
			blocked := e.match(p, d.Name(), isDir)
			if isDir && !blocked && it.depth+1 < maxDepth {
				queue = append(queue, item{p, it.depth + 1})
			}
		}
	}
}

// match records a target for every set that name matches and reports
// whether the entry is a directory denied for reading, whose contents the
// sandbox user cannot reach and so need not be searched.
func (e *expander) match(p, name string, isDir bool) (blocked bool) {
	for _, s := range e.sets {
		if r, ok := matchName(s.s, name); ok && !excepted(s.s, p) {
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

func matchName(s *policy.FileSet, name string) (policy.RuleID, bool) {
	for _, n := range s.Names {
		if n.Value == name {
			return n.Rule, true
		}
	}
	for _, n := range s.NamePrefix {
		if strings.HasPrefix(name, n.Value) {
			return n.Rule, true
		}
	}
	for _, n := range s.NameSuffix {
		if strings.HasSuffix(name, n.Value) {
			return n.Rule, true
		}
	}
	return 0, false
}

// rel turns an absolute path into an fs.FS name rooted at "/".
func rel(p string) string {
	p = strings.TrimPrefix(path.Clean(p), "/")
	if p == "" {
		return "."
	}
	return p
}
