package policy

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// The property behind trust: whatever an untrusted project file says, the
// merged policy is at least as strict as the one without it. The oracle
// compares the two merged policies as sets of what they deny and allow; it
// does not ask the merge code which entries loosen.

// projectLines is the vocabulary the random project files are made of:
// entries that tighten, entries that loosen, and entries that cancel the
// defaults.
var projectLines = []string{
	"mode: audit", "mode: enforce",
	"net: allow", "net: deny",
	"allow_loopback: true", "allow_loopback: false", "allow_loopback: own", "allow_loopback: all",
	"backend: fanotify",
	"allow_read:\n  - .env\n  - \"*.pem\"", "allow_read:\n  - ~/.ssh/",
	"allow_write:\n  - .git/hooks/", "allow_exec:\n  - curl\n  - ssh",
	"deny_read:\n  - secrets/", "deny_write:\n  - Makefile", "deny_exec:\n  - python3",
	"allow_net:\n  - evil.example.com\n  - 0.0.0.0/0", "allow_net:\n  - \"*.com\"",
	"allow_unix:\n  - /run/user/1000/bus", "allow_unix:\n  - /",
	"mask_output:\n  - \"sk-[a-z]+\"",
	"dns:\n  min_ttl: 1h\n  max_ttl: 24h",
	"resource_limits:\n  max_memory: 1G",
}

func TestUntrustedProjectNeverLoosens(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	merged := 0
	for i := range 2000 {
		var lines []string
		seen := map[string]bool{}
		for range 1 + r.IntN(6) {
			l := projectLines[r.IntN(len(projectLines))]
			key, _, _ := strings.Cut(l, ":")
			if seen[key] { // a key once per file
				continue
			}
			seen[key] = true
			lines = append(lines, l)
		}
		if checkUntrusted(t, i, strings.Join(lines, "\n")+"\n") {
			merged++
		}
	}
	if merged < 1000 {
		t.Fatalf("only %d of 2000 random project files parsed: the property was hardly tested", merged)
	}
}

// globals are the trusted layers the property is checked on: the built-in
// defaults, and a stricter global file (no loopback).
func globals(t *testing.T) []*Config {
	t.Helper()
	strict, err := Parse("/home/u/.aigate/config.yaml",
		[]byte(strings.Replace(string(DefaultYAML()), "allow_loopback: own", "allow_loopback: false", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if strict.AllowLoopback == nil || *strict.AllowLoopback != LoopbackNone {
		t.Fatal("the default YAML no longer says allow_loopback: own")
	}
	return []*Config{Defaults(), strict}
}

// FuzzUntrustedProject: the same property for any project file the parser
// accepts.
func FuzzUntrustedProject(f *testing.F) {
	for _, l := range projectLines {
		f.Add(l + "\n")
	}
	f.Fuzz(func(t *testing.T, yaml string) { checkUntrusted(t, 0, yaml) })
}

// checkUntrusted checks the property for one project file; it says whether
// the file parsed (a refused file merges nothing).
func checkUntrusted(t *testing.T, i int, yaml string) bool {
	t.Helper()
	project, err := Parse("/p/.aigate.yaml", []byte(yaml))
	if err != nil {
		return false
	}
	for _, global := range globals(t) {
		checkMerge(t, i, yaml, global, project)
	}
	return true
}

func checkMerge(t *testing.T, i int, yaml string, global, project *Config) {
	t.Helper()
	base, _ := Merge(global, nil, false)
	got, _ := Merge(global, project, false)
	fail := func(what string) {
		t.Helper()
		t.Errorf("case %d: an untrusted project file loosened the policy: %s\n--- file:\n%s", i, what, yaml)
	}
	for _, c := range []struct {
		name       string
		base, got  []PathRule
		mustRemain bool // base ⊆ got (denials, masks) or got ⊆ base (allowances)
	}{
		{"deny_read", base.DenyRead, got.DenyRead, true},
		{"deny_write", base.DenyWrite, got.DenyWrite, true},
		{"deny_exec", base.DenyExec, got.DenyExec, true},
		{"mask_output", base.MaskOutput, got.MaskOutput, true},
		{"allow_unix", base.AllowUnix, got.AllowUnix, false},
	} {
		small, large := c.base, c.got
		if !c.mustRemain {
			small, large = c.got, c.base
		}
		have := map[string]bool{}
		for _, r := range large {
			have[r.Pattern] = true
		}
		for _, r := range small {
			if !have[r.Pattern] {
				if c.mustRemain {
					fail(c.name + " lost " + r.Pattern)
				} else {
					fail(c.name + " gained " + r.Pattern)
				}
			}
		}
	}
	allowed := map[string]bool{}
	for _, e := range base.AllowNet {
		allowed[e.String()] = true
	}
	for _, e := range got.AllowNet {
		if !allowed[e.String()] && got.Net != NetAllow {
			fail("allow_net gained " + e.String())
		}
	}
	if base.Net == NetDeny && got.Net != NetDeny {
		fail("net: deny became " + string(got.Net))
	}
	if loopbackReach(got.Loopback) > loopbackReach(base.Loopback) {
		fail("allow_loopback widened from " + string(base.Loopback) + " to " + string(got.Loopback))
	}
	if base.Mode == ModeEnforce && got.Mode != ModeEnforce {
		fail("mode enforce became " + string(got.Mode))
	}
}

// loopbackReach orders the allow_loopback values by what they let a sandbox
// reach: nothing, its own servers, every local service.
func loopbackReach(m LoopbackMode) int {
	switch m {
	case LoopbackNone:
		return 0
	case LoopbackOwn:
		return 1
	}
	return 2
}
