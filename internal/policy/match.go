package policy

import (
	"net/netip"
	"strings"
)

// The matchers below are the reference semantics: the BPF programs, the
// fanotify backend and the macOS generator must reach the same verdicts, and
// tests compare them with these. Paths are absolute and clean, as d_path
// returns them; the matchers do not clean them.
//
// When several entries match, the one reported is chosen in this order,
// which is what an implementation with one LPM trie per kind and a scan of
// the path's components from the root finds first:
//
//  1. For opens, the Read set before the Write set; for execs, the Exec set
//     before the Read set (an exec also opens the file, so a read rule
//     refuses it too; a backend that sees the open first may report the read
//     rule instead, the verdict is the same).
//  2. Within a set: Paths (the longest matching entry), then Names (the
//     matching component closest to the root), then NamePrefix (the longest),
//     then NameSuffix (the longest). A Names, NamePrefix or NameSuffix match
//     counts only when the set's Except does not match the path.

// MatchOpen reports whether opening path is denied, and by which rule. A
// read rule denies every open; a write rule denies opens for writing.
func (c *Compiled) MatchOpen(path string, write bool) (RuleID, bool) {
	if id, ok := c.Read.Match(path); ok {
		return id, true
	}
	if write {
		return c.Write.Match(path)
	}
	return 0, false
}

// MatchExec reports whether executing path is denied, and by which rule.
// A bare name in deny_exec ("curl") matches an executable of that name in
// any directory.
func (c *Compiled) MatchExec(path string) (RuleID, bool) {
	if id, ok := c.Exec.Match(path); ok {
		return id, true
	}
	return c.Read.Match(path)
}

// Match reports whether path matches the set, and the entry's rule, with the
// precedence described above. Its cost does not grow with the number of
// entries (index.go).
func (s *FileSet) Match(path string) (RuleID, bool) {
	x := s.index()
	if id, ok := x.matchPaths(path); ok {
		return id, true
	}
	id, ok := x.matchNames(path)
	if ok && s.Except != nil {
		if _, except := s.Except.Match(path); except {
			return 0, false
		}
	}
	return id, ok
}

// MatchName reports whether one file name (no slash) matches the set's name
// rules, and which rule: an exact Names entry, else the longest NamePrefix,
// else the longest NameSuffix, as the kernel's tries decide. It is the one
// name matcher: resolve and darwin, which look at directory entries one
// name at a time, use it too. Except is not applied (it needs the path).
func (s *FileSet) MatchName(name string) (RuleID, bool) {
	x := s.index()
	if id, ok := x.names.get(name); ok {
		return id, true
	}
	return x.matchAffix(name)
}

// MatchConnect reports whether a connection to dst is refused, and by which
// rule: an entry of Net.Deny (the most specific), or Net.DenyRule when
// nothing allowed it. An allowed connection returns 0, false.
//
// resolved holds the addresses that the resolver or DNS proxy obtained for
// allow_net domains, each with the ids of the domain rules that produced it;
// an address is allowed through a domain rule when that rule has no port or
// the port of dst. Ids that are not domain rules are ignored. IPv4-mapped
// IPv6 destinations are treated as the IPv4 address. own says whether the
// socket that a loopback dst reaches was created in the sandbox (the kernel
// asks its socket tables; this package cannot).
func (c *Compiled) MatchConnect(dst netip.AddrPort, resolved map[netip.Addr][]RuleID, own bool) (RuleID, bool) {
	addr, port := dst.Addr().Unmap().WithZone(""), dst.Port()
	n := &c.Net
	if id, ok := matchNet(n.Deny, addr, port); ok {
		return id, true
	}
	if IsLoopback(addr) {
		if _, ok := matchNet(n.Allow, addr, port); ok || n.Loopback == LoopbackAll ||
			n.Loopback == LoopbackOwn && own {
			return 0, false
		}
		return n.LoopbackRule, true
	}
	if n.Mode == NetAllow {
		return 0, false
	}
	if _, ok := matchNet(n.Allow, addr, port); ok {
		return 0, false
	}
	for _, id := range resolved[addr] {
		for _, d := range n.Domains {
			if d.Rule == id && (d.Port == 0 || d.Port == port) {
				return 0, false
			}
		}
	}
	return n.DenyRule, true
}

// IsLoopback reports whether addr is one of LoopbackPrefixes.
func IsLoopback(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range LoopbackPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// matchNet returns the first entry of entries (sorted most specific first by
// Compile) that contains addr and allows any port or port.
func matchNet(entries []NetEntry, addr netip.Addr, port uint16) (RuleID, bool) {
	for _, e := range entries {
		if e.Prefix.Contains(addr) && (e.Port == 0 || e.Port == port) {
			return e.Rule, true
		}
	}
	return 0, false
}

// Ancestors returns every directory above a Paths entry of the Read and
// Write sets, "/" excluded, each with the rule of the first entry below
// it. Renaming, removing or replacing such a directory would move the
// protected path's content away, or put other content at the protected
// path, without touching the path itself (mv .git /tmp/old; mv /tmp/g .git
// replaces .git/hooks), so backends that can check renames treat it as a
// write to the protected path (MatchReplace).
func (c *Compiled) Ancestors() []Entry {
	var out []Entry
	seen := map[string]bool{}
	for _, set := range []*FileSet{&c.Write, &c.Read} {
		for _, e := range set.Paths {
			for dir := parentDir(e.Value); dir != "/" && dir != ""; dir = parentDir(dir) {
				if !seen[dir] {
					seen[dir] = true
					out = append(out, Entry{Value: dir, Rule: e.Rule})
				}
			}
		}
	}
	return out
}

// parentDir is path.Dir for the absolute clean paths of a FileSet.
func parentDir(p string) string {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// MatchReplace reports whether renaming (either end), unlinking or
// creating a symbolic link at path is denied, and by which rule: a write or
// read rule that matches path itself (a file no sandboxed process may open
// must not be moved to a readable name or destroyed either), else an
// ancestor of a protected path (Ancestors). The order is the LSM backend's.
// Removing a directory (rmdir) is MatchRemoveDir.
func (c *Compiled) MatchReplace(path string) (RuleID, bool) {
	if id, ok := c.Write.Match(path); ok {
		return id, true
	}
	if id, ok := c.Read.Match(path); ok {
		return id, true
	}
	for _, e := range c.Ancestors() {
		if e.Value == path {
			return e.Rule, true
		}
	}
	return 0, false
}

// MatchRemoveDir reports whether removing the directory path (rmdir) is
// denied, and by which rule: a write or read rule that matches path
// itself. An ancestor of a protected path is not refused: rmdir removes
// only an empty directory, which holds no protected content (the one
// above an existing protected path fails with ENOTEMPTY), and what is
// made again in its place is checked by path.
func (c *Compiled) MatchRemoveDir(path string) (RuleID, bool) {
	if id, ok := c.Write.Match(path); ok {
		return id, true
	}
	return c.Read.Match(path)
}
