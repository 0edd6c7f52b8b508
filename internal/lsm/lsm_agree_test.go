//go:build linux

package lsm

import (
	"os"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// The kernel and the policy package's reference matcher must agree.
func TestLSMMatchesPolicy(t *testing.T) {
	dir := tempDir(t)
	p := compiled(
		ruleSpec{policy.AccessRead, "paths", dir + "/s/secret"},
		ruleSpec{policy.AccessRead, "paths", dir + "/d"},
		ruleSpec{policy.AccessRead, "names", ".git"},
		ruleSpec{policy.AccessRead, "names", "credentials"},
		ruleSpec{policy.AccessRead, "prefix", ".env"},
		ruleSpec{policy.AccessRead, "suffix", ".key"},
		ruleSpec{policy.AccessWrite, "names", "locked"},
		ruleSpec{policy.AccessWrite, "suffix", ".lock"},
		ruleSpec{policy.AccessWrite, "paths", dir + "/w"},
	)
	var paths []string
	for _, rel := range []string{
		"s/secret", "s/secret2", "s/secre", "d/x", "d", "dd/x", "d.x",
		"p/.git/config", "p/.gitignore", "p/x.git", "a/b/c/d/e/credentials", "credentials/x/y",
		".env", ".env.local", "x.env", ".ENV", "a.key", "a.key.pub", "key", ".key",
		"locked/f", "f.lock", "w/x", "wx",
	} {
		paths = append(paths, dir+"/"+rel)
	}
	for _, path := range paths {
		if _, err := os.Stat(path); err != nil {
			touch(t, path)
		}
	}
	l := openLSM(t)
	sb := addSandbox(t, l, p, policy.ModeEnforce)
	for _, path := range paths {
		st, _ := os.Stat(path)
		for _, write := range []bool{false, true} {
			if write && st.IsDir() {
				continue
			}
			mode := "r"
			if write {
				mode = "w"
			}
			want, deny := p.MatchOpen(path, write)
			code, _ := run(t, sb, "open", path, mode)
			if got := code == exitEPERM; got != deny {
				t.Errorf("open(%s, %s): kernel denied=%v (exit %d), policy denied=%v (rule %d)", path, mode, got, code, deny, want)
				continue
			}
			if !deny {
				continue
			}
			ev := nextEvent(t, l)
			// Where several rules match, backends may report another one
			// of them; it must match on its own.
			if ev.Rule != uint32(want) {
				only := onlyRule(p, policy.RuleID(ev.Rule))
				if _, ok := only.MatchOpen(path, write); !ok {
					t.Errorf("open(%s, %s): kernel reported rule %d, which does not match", path, mode, ev.Rule)
				}
			}
		}
	}
	noEvent(t, l)
}

// onlyRule is c reduced to the entries of one rule.
func onlyRule(c *policy.Compiled, id policy.RuleID) *policy.Compiled {
	filter := func(es []policy.Entry) []policy.Entry {
		var out []policy.Entry
		for _, e := range es {
			if e.Rule == id {
				out = append(out, e)
			}
		}
		return out
	}
	set := func(fs policy.FileSet) policy.FileSet {
		return policy.FileSet{Paths: filter(fs.Paths), Names: filter(fs.Names), NamePrefix: filter(fs.NamePrefix), NameSuffix: filter(fs.NameSuffix)}
	}
	return &policy.Compiled{Rules: c.Rules, Read: set(c.Read), Write: set(c.Write), Exec: set(c.Exec)}
}
