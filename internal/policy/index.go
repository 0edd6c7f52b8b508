package policy

import "strings"

// The fanotify backend matches the path of every permission event in user
// space, so a FileSet is matched through maps rather than by scanning its
// entries: the cost of Match depends on the path (its length and depth) and
// not on how many rules the policy has. The semantics are those described
// in match.go; match_ref_test.go keeps the plain scan they are checked
// against.

// setIndex holds one FileSet's entries by value. An entry is found by
// looking up the strings a path or name offers (its ancestors, its
// components, its prefixes and suffixes) that have the length of some
// entry. When two entries have the same value the first listed is
// reported, as a scan finds it.
type setIndex struct {
	paths, names, prefix, suffix lookup
	// carve holds FileSet.Carve: a path beneath a Paths entry that the
	// entry does not cover (matchPaths).
	carve lookup
	// A Paths entry "/" matches every path that starts with "/", not only
	// those that continue with "/" after it, as another entry would: it
	// is kept apart.
	root    RuleID
	hasRoot bool
	// of identifies the slices the index was built from: a set whose
	// slices were since replaced or appended to is indexed afresh.
	of [5]sliceRef
}

// sliceRef identifies a slice of entries by its first element and length.
type sliceRef struct {
	first *Entry
	n     int
}

func refOf(es []Entry) sliceRef {
	if len(es) == 0 {
		return sliceRef{}
	}
	return sliceRef{&es[0], len(es)}
}

func (s *FileSet) refs() [5]sliceRef {
	return [5]sliceRef{refOf(s.Paths), refOf(s.Names), refOf(s.NamePrefix), refOf(s.NameSuffix), refOf(s.Carve)}
}

// lookup maps entry values to rules. hasLen[n] says whether some value has
// n bytes, so that a candidate of another length costs a slice read, not a
// hash; it is empty when the lookup is. For prefixes and suffixes, edge[c]
// says whether some non-empty value starts (prefixes) or ends (suffixes)
// with byte c, so that most names cost no hash at all.
type lookup struct {
	rule   map[string]RuleID
	hasLen []bool
	edge   [256]bool
}

// Which end of an entry value lookup.edge records.
const (
	edgeNone = iota
	edgeFirst
	edgeLast
)

func newLookup(es []Entry, end int) lookup {
	if len(es) == 0 {
		return lookup{}
	}
	l := lookup{rule: make(map[string]RuleID, len(es))}
	for _, e := range es {
		if _, dup := l.rule[e.Value]; dup {
			continue // the first entry with this value is the one reported
		}
		l.rule[e.Value] = e.Rule
		for len(l.hasLen) <= len(e.Value) {
			l.hasLen = append(l.hasLen, false)
		}
		l.hasLen[len(e.Value)] = true
		switch {
		case e.Value == "":
		case end == edgeFirst:
			l.edge[e.Value[0]] = true
		case end == edgeLast:
			l.edge[e.Value[len(e.Value)-1]] = true
		}
	}
	return l
}

// get returns the rule of the entry equal to v.
func (l *lookup) get(v string) (RuleID, bool) {
	if len(v) >= len(l.hasLen) || !l.hasLen[len(v)] {
		return 0, false
	}
	id, ok := l.rule[v]
	return id, ok
}

// buildIndex indexes s's entries; s.Except has an index of its own.
func buildIndex(s *FileSet) *setIndex {
	x := &setIndex{of: s.refs()}
	paths := make([]Entry, 0, len(s.Paths))
	for _, e := range s.Paths {
		if e.Value != "/" {
			paths = append(paths, e)
		} else if !x.hasRoot {
			x.root, x.hasRoot = e.Rule, true
		}
	}
	x.paths = newLookup(paths, edgeNone)
	x.carve = newLookup(s.Carve, edgeNone)
	x.names = newLookup(s.Names, edgeNone)
	x.prefix = newLookup(s.NamePrefix, edgeFirst)
	x.suffix = newLookup(s.NameSuffix, edgeLast)
	return x
}

// index returns s's index: the one Compile built, unless the entries
// changed since, else one built for this call.
func (s *FileSet) index() *setIndex {
	if x := s.idx; x != nil && x.of == s.refs() {
		return x
	}
	return buildIndex(s)
}

// reindex builds the indexes of s and its Except once, for every later
// Match. Compile calls it on the sets it returns; sets are not changed
// after that.
func (s *FileSet) reindex() {
	s.idx = buildIndex(s)
	if s.Except != nil {
		s.Except.reindex()
	}
}

// matchPaths returns the rule of the longest Paths entry that path equals
// or lies beneath: its candidates are path itself and every prefix of it
// followed by "/", longest first. A Carve entry longer than that entry
// (path is it or lies beneath it) means no match, as the LSM backend's
// longest-prefix trie finds it (a carve is stored there with rule 0).
func (x *setIndex) matchPaths(path string) (RuleID, bool) {
	for rest := path; rest != ""; {
		if id, ok := x.paths.get(rest); ok {
			return id, true
		}
		if _, ok := x.carve.get(rest); ok {
			return 0, false
		}
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			break
		}
		rest = rest[:i]
	}
	// Shorter than any candidate above: "/" (1 byte), then "" (0 bytes,
	// which a hand-built set may hold: path is "" or starts with "/").
	if x.hasRoot && strings.HasPrefix(path, "/") {
		return x.root, true
	}
	if path == "" || path[0] == '/' {
		return x.paths.get("")
	}
	return 0, false
}

// matchNames returns the rule of the Names entry equal to the component of
// path closest to the root, else matchAffix of the last component.
func (x *setIndex) matchNames(path string) (RuleID, bool) {
	if len(x.names.hasLen) > 0 {
		for rest := path; rest != ""; {
			var comp string
			comp, rest, _ = strings.Cut(strings.TrimLeft(rest, "/"), "/")
			if id, ok := x.names.get(comp); ok {
				return id, true
			}
		}
	}
	return x.matchAffix(path[strings.LastIndex(path, "/")+1:])
}

// matchAffix returns the rule of the longest NamePrefix entry name starts
// with, else of the longest NameSuffix entry it ends with. An empty entry
// (only in a set built by hand) is the shortest of either.
func (x *setIndex) matchAffix(name string) (RuleID, bool) {
	if name != "" && x.prefix.edge[name[0]] {
		for n := min(len(name), len(x.prefix.hasLen)-1); n >= 1; n-- {
			if id, ok := x.prefix.get(name[:n]); ok {
				return id, true
			}
		}
	}
	if id, ok := x.prefix.get(""); ok {
		return id, true
	}
	if name != "" && x.suffix.edge[name[len(name)-1]] {
		for n := min(len(name), len(x.suffix.hasLen)-1); n >= 1; n-- {
			if id, ok := x.suffix.get(name[len(name)-n:]); ok {
				return id, true
			}
		}
	}
	return x.suffix.get("")
}
