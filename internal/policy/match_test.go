package policy

import (
	"net/netip"
	"testing"
)

func TestMatchOpen(t *testing.T) {
	p := &Policy{
		DenyRead:  rules("g", ".env", ".env.*", "secrets/", "*.pem", "id_rsa*", "~/.ssh/", "~/.kube/config", "a/b/", "/etc/shadow", "~/.ssh/keys/"),
		DenyWrite: rules("g", ".git/hooks/", ".git/config", "~/.bashrc", "b"),
	}
	c := mustCompile(t, p)
	const (
		env = iota + 1
		envStar
		secrets
		pem
		idRSA
		ssh
		kube
		ab
		shadow
		sshKeys
		hooks
		gitConfig
		bashrc
		bName
	)
	for _, tc := range []struct {
		path  string
		write bool
		rule  RuleID // 0: allowed
	}{
		// Names at any depth, anywhere, not only below the project root.
		{"/home/u/proj/.env", false, env},
		{"/.env", false, env},
		{"/tmp/elsewhere/deep/.env", false, env},
		{"/home/u/proj/.env/inside", false, env}, // a directory named .env
		{"/home/u/proj/.env.local", false, envStar},
		{"/home/u/proj/x.env", false, 0},
		{"/home/u/proj/.envrc", false, 0},
		{"/home/u/proj/.env.", false, envStar},
		// "secrets/" denies a file named secrets too, and everything below.
		{"/home/u/proj/secrets", false, secrets},
		{"/home/u/proj/secrets/a/b/c.txt", false, secrets},
		{"/x/y/secrets/z", false, secrets},
		{"/home/u/proj/secrets.txt", false, 0},
		{"/home/u/proj/mysecrets/x", false, 0},
		// Suffix and prefix globs apply to the final component only.
		{"/home/u/proj/cert.pem", false, pem},
		{"/home/u/proj/.pem", false, pem},
		{"/home/u/proj/cert.pem/x", false, 0},
		{"/home/u/proj/cert.pem.bak", false, 0},
		{"/home/u/.ssh2/id_rsa", false, idRSA},
		{"/tmp/id_rsa.pub", false, idRSA}, // documented over-match
		{"/tmp/my_id_rsa", false, 0},
		// "~/" anchors to the home; exact path and beneath, not siblings.
		{"/home/u/.ssh", false, ssh},
		{"/home/u/.ssh/known_hosts", false, ssh},
		{"/home/u/.sshx", false, 0},
		{"/home/u/.kube/config", false, kube},
		{"/home/u/.kube/config2", false, 0},
		{"/home/u/.kube/config/x", false, kube},
		{"/home/u/.kube", false, 0},
		// The longest path entry is reported.
		{"/home/u/.ssh/keys/k", false, sshKeys},
		// "a/b/" is anchored to the project root; "b" is a name anywhere.
		{"/home/u/proj/a/b", false, ab},
		{"/home/u/proj/a/b/c", false, ab},
		{"/home/u/proj/x/a/b", true, bName},
		{"/home/u/proj/x/a/b", false, 0},
		{"/home/u/proj/a/bc", false, 0},
		{"/etc/shadow", false, shadow},
		{"/etc/shadow-", false, 0},
		// Write rules refuse writes only; read rules refuse both and win.
		{"/home/u/proj/.git/config", false, 0},
		{"/home/u/proj/.git/config", true, gitConfig},
		{"/home/u/proj/.git/hooks/pre-commit", true, hooks},
		{"/home/u/other/.git/hooks/pre-commit", true, 0},
		{"/home/u/.bashrc", true, bashrc},
		{"/home/u/proj/.env", true, env},
		{"/home/u/proj/b/secrets", true, secrets},
		// Paths before names before prefixes before suffixes.
		{"/home/u/.ssh/secrets/id_rsa.pem", false, ssh},
		{"/home/u/proj/secrets/id_rsa.pem", false, secrets},
		{"/home/u/proj/id_rsa.pem", false, idRSA},
		// Names closest to the root win.
		{"/tmp/.env/secrets/x", false, env},
		{"/tmp/secrets/.env/x", false, secrets},
		{"/", false, 0},
	} {
		got, denied := c.MatchOpen(tc.path, tc.write)
		if denied != (tc.rule != 0) || got != tc.rule {
			t.Errorf("MatchOpen(%q, write=%v) = %d, %v; want %d", tc.path, tc.write, got, denied, tc.rule)
		}
	}
}

func TestMatchExec(t *testing.T) {
	p := &Policy{DenyRead: rules("g", "*.pem"), DenyExec: rules("g", "curl", "/opt/tool/bin/", "nc*")}
	c := mustCompile(t, p)
	for _, tc := range []struct {
		path string
		rule RuleID
	}{
		{"/usr/bin/curl", 2},
		{"/home/u/bin/curl", 2},
		{"/usr/bin/curl-config", 0},
		{"/usr/bin/ncat", 4},
		{"/opt/tool/bin/x", 3},
		{"/opt/tool/binx", 0},
		{"/tmp/evil.pem", 1}, // an exec opens the file: read rules apply
		{"/usr/bin/ls", 0},
	} {
		got, denied := c.MatchExec(tc.path)
		if denied != (tc.rule != 0) || got != tc.rule {
			t.Errorf("MatchExec(%q) = %d, %v; want %d", tc.path, got, denied, tc.rule)
		}
	}
}

func TestMatchConnect(t *testing.T) {
	eps := func(ss ...string) []Endpoint {
		var out []Endpoint
		for _, s := range ss {
			ep, err := ParseEndpoint(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ep)
		}
		return out
	}
	// Rules: 1 github.com, 2 api.x.com:443, 3 10.0.0.0/8, 4 10.1.2.3:5432,
	// 5 2001:db8::/32, 6 metadata, 7 net: deny.
	deny := mustCompile(t, &Policy{Net: NetDeny, Loopback: LoopbackAll,
		AllowNet: eps("github.com", "api.x.com:443", "10.0.0.0/8", "10.1.2.3:5432", "2001:db8::/32")})
	// 1 127.0.0.1:8080, 2 metadata, 3 allow_loopback: false, 4 net: deny.
	noLoop := mustCompile(t, &Policy{Net: NetDeny, Loopback: LoopbackNone, AllowNet: eps("127.0.0.1:8080")})
	// 1 [::1]:5432, 2 metadata, 3 allow_loopback: own, 4 net: deny.
	own := mustCompile(t, &Policy{Net: NetDeny, Loopback: LoopbackOwn, AllowNet: eps("[::1]:5432")})
	allow := mustCompile(t, &Policy{Net: NetAllow, Loopback: LoopbackAll})
	// 1 metadata, 2 allow_loopback: false.
	allowNoLoop := mustCompile(t, &Policy{Net: NetAllow, Loopback: LoopbackNone})
	allowOwn := mustCompile(t, &Policy{Net: NetAllow, Loopback: LoopbackOwn})
	resolved := map[netip.Addr][]RuleID{
		netip.MustParseAddr("140.82.1.1"): {1},
		netip.MustParseAddr("93.184.1.1"): {2},
		netip.MustParseAddr("5.5.5.5"):    {99, 3}, // not domain rules: ignored
	}
	for _, tc := range []struct {
		name string
		c    *Compiled
		dst  string
		rule RuleID
		own  bool // the listener belongs to the sandbox
	}{
		{"domain any port", deny, "140.82.1.1:22", 0, false},
		{"domain port", deny, "93.184.1.1:443", 0, false},
		{"domain other port", deny, "93.184.1.1:80", 7, false},
		{"unresolved", deny, "8.8.8.8:53", 7, false},
		{"non-domain ids ignored", deny, "5.5.5.5:80", 7, false},
		{"cidr", deny, "10.9.9.9:80", 0, false},
		{"v4-mapped cidr", deny, "[::ffff:10.9.9.9]:80", 0, false},
		{"v6 cidr", deny, "[2001:db8::1]:443", 0, false},
		{"v6 outside", deny, "[2001:db9::1]:443", 7, false},
		{"metadata", deny, "169.254.169.254:80", 6, false},
		{"v4-mapped metadata", deny, "[::ffff:169.254.169.254]:80", 6, false},
		{"v6 metadata", deny, "[fd00:ec2::254]:80", 6, false},
		{"loopback", deny, "127.0.0.53:53", 0, false},
		{"v6 loopback", deny, "[::1]:8080", 0, false},
		{"v4-mapped loopback", deny, "[::ffff:127.0.0.1]:80", 0, false},
		{"unspecified", deny, "0.0.0.0:80", 0, false},
		{"loopback off", noLoop, "127.0.0.1:80", 3, false},
		{"loopback off, listed port", noLoop, "127.0.0.1:8080", 0, false},
		{"unspecified, loopback off", noLoop, "0.0.0.0:80", 3, false},
		{"allow mode", allow, "8.8.8.8:53", 0, false},
		{"allow mode metadata", allow, "169.254.169.254:80", 1, false},
		{"allow mode, loopback off", allowNoLoop, "127.0.0.1:80", 2, false},
		{"allow mode, loopback off, v6 unspecified", allowNoLoop, "[::]:80", 2, false},
		{"allow mode, loopback off, elsewhere", allowNoLoop, "1.1.1.1:443", 0, false},
		{"loopback off, own listener", noLoop, "127.0.0.1:80", 3, true},
		{"own", own, "127.0.0.1:80", 0, true},
		{"own, v6", own, "[::1]:80", 0, true},
		{"own, v4-mapped", own, "[::ffff:127.0.0.1]:80", 0, true},
		{"own, not the sandbox's", own, "127.0.0.1:80", 3, false},
		{"own, not the sandbox's, v6", own, "[::1]:80", 3, false},
		{"own, not the sandbox's, unspecified", own, "[::]:80", 3, false},
		{"own, listed port", own, "[::1]:5432", 0, false},
		{"own, listed port, other address", own, "127.0.0.1:5432", 3, false},
		{"own, elsewhere", own, "10.0.0.1:80", 4, false},
		{"allow mode, own", allowOwn, "127.0.0.1:80", 0, true},
		{"allow mode, own, not the sandbox's", allowOwn, "127.0.0.1:80", 2, false},
		{"allow mode, own, elsewhere", allowOwn, "1.1.1.1:80", 0, false},
	} {
		got, denied := tc.c.MatchConnect(netip.MustParseAddrPort(tc.dst), resolved, tc.own)
		if denied != (tc.rule != 0) || got != tc.rule {
			t.Errorf("%s: MatchConnect(%s) = %d, %v; want %d", tc.name, tc.dst, got, denied, tc.rule)
		}
	}
}

func TestMatchReplaceAncestors(t *testing.T) {
	p, _ := Merge(&Config{
		DenyWrite: []PathRule{{Pattern: ".git/hooks/"}, {Pattern: "~/.config/git/"}, {Pattern: ".aigate.yaml"}},
		DenyRead:  []PathRule{{Pattern: "~/.kube/config"}},
	}, nil, false)
	c, err := Compile(p, Env{Home: "/home/u", ProjectRoot: "/home/u/proj"})
	if err != nil {
		t.Fatal(err)
	}
	rule := func(pattern string) RuleID {
		for _, r := range c.Rules {
			if r.Pattern == pattern {
				return r.ID
			}
		}
		t.Fatalf("no rule %q", pattern)
		return 0
	}
	for _, tc := range []struct {
		path string
		want RuleID // 0: allowed
	}{
		{"/home/u/proj/.git", rule(".git/hooks/")},
		{"/home/u/proj", rule(".git/hooks/")},
		{"/home/u", rule(".git/hooks/")},
		{"/home", rule(".git/hooks/")},
		{"/home/u/proj/.git/hooks", rule(".git/hooks/")},
		{"/home/u/proj/.git/hooks/pre-commit", rule(".git/hooks/")},
		{"/home/u/.config", rule("~/.config/git/")},
		{"/home/u/.kube", rule("~/.kube/config")},
		{"/home/u/x/.aigate.yaml", rule(".aigate.yaml")},
		// Beside, not above, a protected path: allowed.
		{"/home/u/proj/.git/objects", 0},
		{"/home/u/proj/src", 0},
		{"/home/u/.configs", 0},
		{"/home/u/.config/gitx", 0},
		{"/", 0},
	} {
		got, ok := c.MatchReplace(tc.path)
		if ok != (tc.want != 0) || got != tc.want {
			t.Errorf("MatchReplace(%s) = %d, %v; want %d", tc.path, got, ok, tc.want)
		}
	}
	// rmdir refuses the protected path itself, never an ancestor (it
	// removes only an empty directory).
	for path, want := range map[string]RuleID{
		"/home/u/proj/.git":       0,
		"/home/u/.config":         0,
		"/home/u/proj/.git/hooks": rule(".git/hooks/"),
		"/home/u/.kube/config":    rule("~/.kube/config"),
	} {
		if got, ok := c.MatchRemoveDir(path); ok != (want != 0) || got != want {
			t.Errorf("MatchRemoveDir(%s) = %d, %v; want %d", path, got, ok, want)
		}
	}
	// An open of an ancestor is not a write to what lies below it.
	if id, ok := c.MatchOpen("/home/u/.config", true); ok {
		t.Errorf("open of ~/.config denied by rule %d", id)
	}
}

// MatchName is the one file-name matcher (policy, resolve and darwin). The
// cases marked "first" are where resolve and darwin, which took the first
// matching entry, reported another rule than policy's longest match.
func TestMatchNameOneSemantics(t *testing.T) {
	s := &FileSet{
		Names:      []Entry{{Value: ".env", Rule: 1}},
		NamePrefix: []Entry{{Value: ".env", Rule: 2}, {Value: ".env.local", Rule: 3}, {Value: "id_", Rule: 4}},
		NameSuffix: []Entry{{Value: ".pem", Rule: 5}, {Value: "-key.pem", Rule: 6}, {Value: "_rsa", Rule: 7}},
	}
	for _, tc := range []struct {
		name string
		rule RuleID // 0: no match
		why  string
	}{
		{".env", 1, "an exact name beats a prefix"},
		{".env.prod", 2, "one prefix"},
		{".env.local.bak", 3, "first: the longest prefix, not the first listed (was 2)"},
		{"server.pem", 5, "one suffix"},
		{"server-key.pem", 6, "first: the longest suffix, not the first listed (was 5)"},
		{"id_rsa", 4, "a prefix beats a suffix"},
		{"my_rsa", 7, "suffix only"},
		{"env", 0, "no match"},
	} {
		got, ok := s.MatchName(tc.name)
		if got != tc.rule || ok != (tc.rule != 0) {
			t.Errorf("%s: rule %d (%v), want %d: %s", tc.name, got, ok, tc.rule, tc.why)
		}
		// The path matcher agrees for a name in any directory.
		if pg, pok := s.Match("/home/u/" + tc.name); pg != got || pok != ok {
			t.Errorf("%s: Match says rule %d (%v), MatchName %d (%v)", tc.name, pg, pok, got, ok)
		}
	}
}
