package policy

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// randSet builds a FileSet from a small alphabet, so that entries overlap:
// the same value twice with different rules, prefixes of one another, "/"
// and "" among the paths, names with dots, and sometimes an Except.
func randSet(r *rand.Rand, depth int) *FileSet {
	str := func(alpha string, max int) string {
		var b strings.Builder
		for range r.IntN(max + 1) {
			b.WriteByte(alpha[r.IntN(len(alpha))])
		}
		return b.String()
	}
	list := func(alpha string, max int) []Entry {
		var out []Entry
		for range r.IntN(6) {
			v := str(alpha, max)
			switch r.IntN(8) {
			case 0:
				v = "/"
			case 1:
				v = "/" + v
			}
			out = append(out, Entry{Value: v, Rule: RuleID(r.IntN(12))})
		}
		return out
	}
	s := &FileSet{
		Paths:      list("/ab", 5),
		Names:      list("ab.", 3),
		NamePrefix: list("ab.", 3),
		NameSuffix: list("ab.", 3),
	}
	if depth == 0 && r.IntN(3) == 0 {
		s.Except = randSet(r, depth+1)
	}
	return s
}

func randPath(r *rand.Rand) string {
	const alpha = "//ab."
	var b strings.Builder
	for range r.IntN(11) {
		b.WriteByte(alpha[r.IntN(len(alpha))])
	}
	return b.String()
}

// checkAgrees fails t when s's Match or MatchName disagrees with the scan
// on p (and on p as a name).
func checkAgrees(t *testing.T, s *FileSet, p string) {
	t.Helper()
	if id, ok := s.Match(p); id != 0 && !ok || !sameMatch(id, ok, s, p, refMatch) {
		want, wok := refMatch(s, p)
		t.Fatalf("set %+v (except %+v), path %q: Match = %d, %v; the scan says %d, %v", *s, s.Except, p, id, ok, want, wok)
	}
	name := p[strings.LastIndex(p, "/")+1:]
	for _, n := range []string{name, p} {
		if !sameMatch(0, false, s, n, nil) {
			id, ok := s.MatchName(n)
			want, wok := refMatchName(s, n)
			t.Fatalf("set %+v, name %q: MatchName = %d, %v; the scan says %d, %v", *s, n, id, ok, want, wok)
		}
	}
}

// sameMatch compares s.Match(p) (got, ok) with ref, or when ref is nil,
// MatchName with refMatchName.
func sameMatch(got RuleID, ok bool, s *FileSet, p string, ref func(*FileSet, string) (RuleID, bool)) bool {
	if ref == nil {
		got, ok = s.MatchName(p)
		ref = refMatchName
	}
	want, wok := ref(s, p)
	return got == want && ok == wok
}

// TestMatchAgreesWithScan compares the indexed matcher with the scan it
// replaced (match_ref_test.go) on random sets and paths: sets built by
// hand (indexed on each call), indexed once as Compile does, and indexed
// and then appended to (the stale index must not be used).
func TestMatchAgreesWithScan(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 10000))
	for range 2000 {
		s := randSet(r, 0)
		paths := make([]string, 8)
		for i := range paths {
			paths[i] = randPath(r)
		}
		for _, p := range paths {
			checkAgrees(t, s, p)
		}
		s.reindex()
		for _, p := range paths {
			checkAgrees(t, s, p)
		}
		// Appended after indexing: a rule the stale index does not hold.
		grown := *s
		grown.Paths = append(grown.Paths, Entry{Value: paths[0], Rule: 99})
		grown.Names = append(grown.Names, Entry{Value: paths[1][strings.LastIndex(paths[1], "/")+1:], Rule: 98})
		grown.NameSuffix = append(grown.NameSuffix, Entry{Value: "b", Rule: 97})
		for _, p := range paths {
			checkAgrees(t, &grown, p)
		}
	}
}

// TestMatchCompiledAgreesWithScan does the same for compiled policies of
// every pattern kind, on the paths the patterns produce.
func TestMatchCompiledAgreesWithScan(t *testing.T) {
	pats := []string{".env", ".env.*", "*.pem", "*-key.pem", "id_rsa*", "secrets/", "~/.ssh/", "~/.ssh/keys/",
		"~/.kube/config", "a/b/", "/etc/shadow", "/etc", ".git/hooks/", "b", "node_modules", "*.pub"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		p := &Policy{}
		for range 1 + r.IntN(8) {
			pat := rules("g", pats[r.IntN(len(pats))])
			switch r.IntN(3) {
			case 0:
				p.DenyRead = append(p.DenyRead, pat...)
			case 1:
				p.DenyWrite = append(p.DenyWrite, pat...)
			default:
				p.ExceptRead = append(p.ExceptRead, pat...)
			}
		}
		// Not mustCompile: its self-check expects no except_read entry
		// to equal a deny_read one, which these random policies may hold.
		c, err := Compile(p, testEnv)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/home/u/proj/.env", "/home/u/.ssh/keys/id_rsa.pub", "/home/u/proj/a/b/c",
			"/etc/shadow", "/etc/x.pem", "/home/u/proj/node_modules/x/server-key.pem", "/home/u/.kube/config/x",
			"/tmp/.env.local", "/home/u/proj/secrets/b", "/", "/home/u/proj/.git/hooks/pre-commit"} {
			for _, s := range []*FileSet{&c.Read, &c.Write} {
				checkAgrees(t, s, path)
			}
		}
	}
}

// FuzzMatch compares the indexed matcher with the scan on any set and
// path. Each line of entries is one entry: its first byte says the list
// (p: Paths, n: Names, <: NamePrefix, >: NameSuffix, x: a Names entry of
// Except, X: a Paths entry of Except), the rest is the value; the rule is
// the line number modulo 4, so values repeat with other rules.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"p/home/u/.ssh\nn.env\n<id_\n>.pem\nx.pub", "/home/u/.ssh/id_rsa.pub"},
		{"p/\np/a\np/a/b", "/a/b/c"},
		{"p\nn\n<\n>", "//"},
		{"n.env\n<.env\n<.env.local\n>.pem\n>-key.pem", "/x/.env.local.bak"},
		{"pa\nXa/b\nnb", "a/b"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, entries, p string) {
		s := &FileSet{}
		for i, line := range strings.Split(entries, "\n") {
			if line == "" {
				continue
			}
			e := Entry{Value: line[1:], Rule: RuleID(i % 4)}
			switch line[0] {
			case 'p':
				s.Paths = append(s.Paths, e)
			case 'n':
				s.Names = append(s.Names, e)
			case '<':
				s.NamePrefix = append(s.NamePrefix, e)
			case '>':
				s.NameSuffix = append(s.NameSuffix, e)
			case 'x', 'X':
				if s.Except == nil {
					s.Except = &FileSet{}
				}
				if line[0] == 'x' {
					s.Except.Names = append(s.Except.Names, e)
				} else {
					s.Except.Paths = append(s.Except.Paths, e)
				}
			}
		}
		checkAgrees(t, s, p)
		s.reindex()
		checkAgrees(t, s, p)
	})
}
