package policy

import (
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"
)

var testEnv = Env{Home: "/home/u", ProjectRoot: "/home/u/proj"}

func rules(file string, patterns ...string) []PathRule {
	out := make([]PathRule, len(patterns))
	for i, p := range patterns {
		out[i] = PathRule{Pattern: p, Source: Source{File: file, Line: i + 1}}
	}
	return out
}

func mustCompile(t *testing.T, p *Policy) *Compiled {
	t.Helper()
	c, err := Compile(p, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	checkCompiled(t, c)
	return c
}

func TestCompileFileSets(t *testing.T) {
	p := &Policy{
		DenyRead:  rules("g", ".env", "secrets/", "*.pem", "id_rsa*", "~/.ssh/", "config/prod.yaml", "/etc/shadow", "**/secrets", "/home/u/.ssh"),
		DenyWrite: rules("g", ".git/hooks/", "~/.bashrc"),
		DenyExec:  rules("g", "curl", "/usr/bin/wget"),
	}
	c := mustCompile(t, p)
	want := FileSet{
		Paths:      []Entry{{"/home/u/.ssh", 5}, {"/home/u/proj/config/prod.yaml", 6}, {"/etc/shadow", 7}},
		Names:      []Entry{{".env", 1}, {"secrets", 2}},
		NamePrefix: []Entry{{"id_rsa", 4}},
		NameSuffix: []Entry{{".pem", 3}},
	}
	if !equalSets(c.Read, want) {
		t.Errorf("Read = %+v\nwant %+v", c.Read, want)
	}
	if w := (FileSet{Paths: []Entry{{"/home/u/proj/.git/hooks", 10}, {"/home/u/.bashrc", 11}}}); !equalSets(c.Write, w) {
		t.Errorf("Write = %+v", c.Write)
	}
	if w := (FileSet{Paths: []Entry{{"/usr/bin/wget", 13}}, Names: []Entry{{"curl", 12}}}); !equalSets(c.Exec, w) {
		t.Errorf("Exec = %+v", c.Exec)
	}
	// Duplicates keep their rule (for status output) but add no entry.
	if r, _ := c.Rule(9); r.Pattern != "/home/u/.ssh" || r.Access != AccessRead {
		t.Errorf("rule 9 = %+v", r)
	}
	if r, _ := c.Rule(12); r.Pattern != "curl" || r.Access != AccessExec || r.Source.String() != "g:1" {
		t.Errorf("rule 12 = %+v", r)
	}
}

func equalSets(a, b FileSet) bool {
	return slices.Equal(a.Paths, b.Paths) && slices.Equal(a.Names, b.Names) &&
		slices.Equal(a.NamePrefix, b.NamePrefix) && slices.Equal(a.NameSuffix, b.NameSuffix)
}

func TestCompileNet(t *testing.T) {
	eps := func(ss ...string) []Endpoint {
		var out []Endpoint
		for i, s := range ss {
			ep, err := ParseEndpoint(s)
			if err != nil {
				t.Fatal(err)
			}
			ep.Source = Source{File: "g", Line: i + 1}
			out = append(out, ep)
		}
		return out
	}
	p := &Policy{DenyRead: rules("g", ".env"), Net: NetDeny, Loopback: LoopbackAll,
		AllowNet:  eps("github.com", "10.0.0.0/8", "10.1.0.0/16:5432", "*.example.com:443", "[::1]:8080"),
		NetSource: Source{File: "g", Line: 9}}
	c := mustCompile(t, p)
	n := c.Net
	if n.Mode != NetDeny || n.Loopback != LoopbackAll || n.LoopbackRule != 0 {
		t.Errorf("mode %v loopback %v", n.Mode, n.Loopback)
	}
	wantAllow := []NetEntry{
		{netip.MustParsePrefix("::1/128"), 8080, 6},
		{netip.MustParsePrefix("10.1.0.0/16"), 5432, 4},
		{netip.MustParsePrefix("10.0.0.0/8"), 0, 3},
	}
	if !slices.Equal(n.Allow, wantAllow) {
		t.Errorf("Allow = %v\nwant %v", n.Allow, wantAllow)
	}
	wantDomains := []DomainEntry{{"github.com", false, 0, 2}, {"example.com", true, 443, 5}}
	if !slices.Equal(n.Domains, wantDomains) {
		t.Errorf("Domains = %v", n.Domains)
	}
	wantDeny := []NetEntry{
		{netip.MustParsePrefix("fd00:ec2::254/128"), 0, 7},
		{netip.MustParsePrefix("169.254.169.254/32"), 0, 7},
	}
	if !slices.Equal(n.Deny, wantDeny) {
		t.Errorf("Deny = %v\nwant %v", n.Deny, wantDeny)
	}
	if n.DenyRule != 8 || len(c.Rules) != 8 {
		t.Fatalf("DenyRule = %d, %d rules", n.DenyRule, len(c.Rules))
	}
	if r := c.Rules[7]; r.Pattern != "net: deny" || r.Source.String() != "g:9" || r.Access != 0 {
		t.Errorf("net rule = %+v", r)
	}
	if r := c.Rules[4]; r.Pattern != "*.example.com:443" || r.Source.String() != "g:4" {
		t.Errorf("rule 5 = %+v", r)
	}

	// Listing the metadata address explicitly lifts the built-in deny for it
	// only; a prefix that contains it does not.
	p = &Policy{Net: NetAllow, AllowNet: eps("169.254.169.254", "fd00::/8"), Loopback: LoopbackNone,
		LoopbackSource: Source{File: "g", Line: 5}}
	c = mustCompile(t, p)
	var deny []string
	for _, e := range c.Net.Deny {
		deny = append(deny, e.Prefix.String())
	}
	if want := []string{"fd00:ec2::254/128"}; !slices.Equal(deny, want) {
		t.Errorf("Deny with net: allow, allow_loopback: false = %v\nwant %v", deny, want)
	}
	// Loopback is refused by its own rule in both modes, not by Deny entries.
	if r := c.Net.LoopbackRule; r == 0 || c.Rules[r-1].Pattern != "allow_loopback: false" || c.Rules[r-1].Source.String() != "g:5" {
		t.Errorf("LoopbackRule %d of %+v", r, c.Rules)
	}
	if c.Net.DenyRule != 0 {
		t.Errorf("DenyRule = %d with net: allow", c.Net.DenyRule)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		env  Env
		want string
	}{
		{Policy{DenyRead: rules("g", "~/.ssh/")}, Env{ProjectRoot: "/p"},
			`g:1: pattern "~/.ssh/" is relative to the home directory, which is unknown (got "")`},
		{Policy{DenyRead: rules("g", "config/x")}, Env{Home: "/h", ProjectRoot: "rel"},
			`g:1: pattern "config/x" is relative to the project root, which is unknown (got "rel")`},
		{Policy{DenyRead: rules("g", "./")}, Env{ProjectRoot: "/"},
			`g:1: pattern "./" expands to "/", which would match every file`},
		{Policy{DenyWrite: rules("g", "~/"+strings.Repeat("x", 240))}, Env{Home: "/home/someone"},
			`g:1: pattern "~/xxxxxxxx`},
		{Policy{DenyRead: rules("g", "a/*.pem")}, testEnv, `g:1: pattern "a/*.pem": a "*" in an anchored`},
		{Policy{MaskOutput: rules("g", "a(")}, testEnv, `g:1: mask_output entry "a(": missing closing )`},
		{Policy{AllowNet: []Endpoint{{Raw: "bad..com", Source: Source{File: "g", Line: 3}}}}, testEnv,
			`g:3: allow_net entry "bad..com": empty label in domain "bad..com"`},
	} {
		_, err := Compile(&tc.p, tc.env)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Compile = %v\nwant prefix %q", err, tc.want)
		}
	}
}

func TestCompileDefaults(t *testing.T) {
	p, _ := Merge(nil, nil, false)
	c := mustCompile(t, p)
	if got := len(c.Rules); got != len(defaultDenyRead)+len(defaultDenyWrite)+len(defaultDenyExec)+len(defaultAllowNet)+len(defaultExceptRead)+3+cacheRules() {
		t.Errorf("%d rules", got)
	}
	if c.Mode != ModeEnforce || c.Backend != BackendAuto || c.Net.Mode != NetDeny || c.Net.Loopback != LoopbackOwn {
		t.Errorf("mode %v backend %v net %v loopback %v", c.Mode, c.Backend, c.Net.Mode, c.Net.Loopback)
	}
}

// checkCompiled asserts the invariants every backend relies on.
func checkCompiled(t *testing.T, c *Compiled) {
	t.Helper()
	for i, r := range c.Rules {
		if r.ID != RuleID(i+1) {
			t.Fatalf("Rules[%d].ID = %d", i, r.ID)
		}
	}
	validRule := func(id RuleID) {
		if _, ok := c.Rule(id); !ok {
			t.Fatalf("entry refers to rule %d of %d", id, len(c.Rules))
		}
	}
	sets := map[string]*FileSet{"read": &c.Read, "write": &c.Write, "exec": &c.Exec, "unix": &c.Net.Unix}
	for name, s := range sets {
		for _, e := range s.Paths {
			validRule(e.Rule)
			if !path.IsAbs(e.Value) || path.Clean(e.Value) != e.Value || e.Value == "/" || len(e.Value) > maxPathLen {
				t.Fatalf("%s path %q is not absolute, clean and short", name, e.Value)
			}
			for _, p := range []string{e.Value, e.Value + "/x", e.Value + "/a/b"} {
				if _, ok := s.Match(p); !ok {
					t.Fatalf("%s path entry %q does not match %q", name, e.Value, p)
				}
			}
		}
		for _, list := range [][]Entry{s.Names, s.NamePrefix, s.NameSuffix} {
			for _, e := range list {
				validRule(e.Rule)
				if e.Value == "" || strings.Contains(e.Value, "/") || len(e.Value) > maxPathLen {
					t.Fatalf("%s name %q is empty, has a slash or is too long", name, e.Value)
				}
			}
		}
		for _, e := range s.Names {
			for _, p := range []string{"/" + e.Value, "/a/" + e.Value, "/a/" + e.Value + "/b"} {
				if _, ok := s.Match(p); !ok {
					t.Fatalf("%s name %q does not match %q", name, e.Value, p)
				}
			}
		}
		for _, e := range s.NamePrefix {
			if _, ok := s.Match("/a/" + e.Value + "x"); !ok {
				t.Fatalf("%s prefix %q does not match", name, e.Value)
			}
		}
		for _, e := range s.NameSuffix {
			if _, ok := s.Match("/a/x" + e.Value); !ok {
				t.Fatalf("%s suffix %q does not match", name, e.Value)
			}
		}
	}
	// A read rule refuses writes too; an exec is refused by the read rules.
	for _, s := range []*FileSet{&c.Read, &c.Write, &c.Exec} {
		for _, e := range s.Paths {
			if id, ok := c.MatchOpen(e.Value, false); ok {
				if id2, ok2 := c.MatchOpen(e.Value, true); !ok2 || id2 != id {
					t.Fatalf("%q: read open denied by %d, write open by %d %v", e.Value, id, id2, ok2)
				}
				if _, ok := c.MatchExec(e.Value); !ok {
					t.Fatalf("%q: read denied but exec allowed", e.Value)
				}
			}
		}
	}
	for _, list := range [][]NetEntry{c.Net.Allow, c.Net.Deny} {
		for _, e := range list {
			validRule(e.Rule)
			if e.Prefix != e.Prefix.Masked() || e.Prefix.Addr().Is4In6() {
				t.Fatalf("net entry %v is not canonical", e.Prefix)
			}
		}
	}
	for _, e := range c.Net.Domains {
		validRule(e.Rule)
	}
	if c.Net.Mode == NetDeny {
		validRule(c.Net.DenyRule)
	}
}

// FuzzCompile checks compile + match against docMatch, a reading of
// docs/patterns.md that shares no code with the product's classifier, for
// any pattern the parser accepts and any absolute clean path.
func FuzzCompile(f *testing.F) {
	for _, s := range [][2]string{
		{".env", "/a/.env/b"}, {"*.pem", "/x.pem"}, {"id_rsa*", "/h/id_rsa.pub"}, {"a/b/", "/home/u/proj/a/b"},
		{"~/.kube/config", "/home/u/.kube/config2"}, {"/etc", "/etc/x"}, {"./", "/home/u/proj"}, {"secrets", "/secrets"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, p string) {
		_, err := parsePattern(pat)
		if err != nil || !path.IsAbs(p) || path.Clean(p) != p {
			return
		}
		c, cerr := Compile(&Policy{DenyRead: []PathRule{{Pattern: pat}}}, testEnv)
		if cerr != nil {
			return
		}
		want := docMatch(pat, p)
		id, got := c.MatchOpen(p, false)
		if got != want || (got && id != 1) {
			t.Fatalf("pattern %q, path %q: MatchOpen = %d, %v; want %v", pat, p, id, got, want)
		}
		if _, w := c.MatchOpen(p, true); w != got {
			t.Fatalf("pattern %q, path %q: a write open disagrees with a read open", pat, p)
		}
	})
}

// docMatch says whether pattern pat matches path p, from the table in
// docs/patterns.md alone.
func docMatch(pat, p string) bool {
	// Repeated slashes count as one; "**/x" is "x", "x/**" is "x/", and a
	// trailing slash is the name itself.
	for strings.Contains(pat, "//") {
		pat = strings.ReplaceAll(pat, "//", "/")
	}
	for {
		t := strings.TrimPrefix(pat, "**/")
		t = strings.TrimSuffix(t, "/**")
		if len(t) > 1 {
			t = strings.TrimSuffix(t, "/")
		}
		if t == pat {
			break
		}
		pat = t
	}
	under := func(full string) bool {
		full = path.Clean(full)
		return full == "/" || p == full || strings.HasPrefix(p, full+"/")
	}
	name := p[strings.LastIndex(p, "/")+1:]
	switch {
	case pat == "~" || strings.HasPrefix(pat, "~/"):
		return under(testEnv.Home + "/" + strings.TrimPrefix(pat, "~"))
	case strings.HasPrefix(pat, "/"):
		return under(pat)
	case pat == "." || strings.HasPrefix(pat, "./") || strings.Contains(pat, "/"):
		return under(testEnv.ProjectRoot + "/" + pat)
	case strings.HasPrefix(pat, "*"):
		return strings.HasSuffix(name, pat[1:])
	case strings.HasSuffix(pat, "*"):
		return strings.HasPrefix(name, pat[:len(pat)-1])
	}
	return slices.Contains(strings.Split(p, "/"), pat)
}
