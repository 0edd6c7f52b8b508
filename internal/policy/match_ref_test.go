package policy

import "strings"

// refMatch is FileSet.Match as a plain scan of every entry: the semantics
// match.go describes, written the obvious way, that the indexed matcher
// (index.go) is compared with (TestMatchAgreesWithScan, FuzzMatch).
func refMatch(s *FileSet, path string) (RuleID, bool) {
	best, bestLen := RuleID(0), -1
	for _, e := range s.Paths {
		if len(e.Value) > bestLen && refUnderPath(path, e.Value) {
			best, bestLen = e.Rule, len(e.Value)
		}
	}
	if bestLen >= 0 {
		return best, true
	}
	id, ok := refMatchNames(s, path)
	if ok && s.Except != nil {
		if _, except := refMatch(s.Except, path); except {
			return 0, false
		}
	}
	return id, ok
}

// refMatchNames: Names at any depth (the component closest to the root
// wins), then prefixes and suffixes of the last component.
func refMatchNames(s *FileSet, path string) (RuleID, bool) {
	for rest := path; rest != ""; {
		var comp string
		comp, rest, _ = strings.Cut(strings.TrimLeft(rest, "/"), "/")
		for _, e := range s.Names {
			if comp == e.Value {
				return e.Rule, true
			}
		}
	}
	return refMatchAffix(s, path[strings.LastIndex(path, "/")+1:])
}

// refMatchName is FileSet.MatchName as a scan.
func refMatchName(s *FileSet, name string) (RuleID, bool) {
	for _, e := range s.Names {
		if name == e.Value {
			return e.Rule, true
		}
	}
	return refMatchAffix(s, name)
}

// refMatchAffix: the longest prefix, else the longest suffix; the first
// listed of equally long entries.
func refMatchAffix(s *FileSet, name string) (RuleID, bool) {
	best, bestLen := RuleID(0), -1
	for _, e := range s.NamePrefix {
		if len(e.Value) > bestLen && strings.HasPrefix(name, e.Value) {
			best, bestLen = e.Rule, len(e.Value)
		}
	}
	if bestLen >= 0 {
		return best, true
	}
	for _, e := range s.NameSuffix {
		if len(e.Value) > bestLen && strings.HasSuffix(name, e.Value) {
			best, bestLen = e.Rule, len(e.Value)
		}
	}
	return best, bestLen >= 0
}

// refUnderPath reports whether path is dir or lies beneath it.
func refUnderPath(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir) && path[len(dir)] == '/'
}
