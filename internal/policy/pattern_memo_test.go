package policy

import (
	"fmt"
	"testing"
)

// TestPatternMemoSameAsParsing: a remembered pattern is what parsing gives,
// for every pattern of the default policy and for edge cases; an invalid
// pattern is refused every time with the same error and never remembered;
// the memo stays within its bound.
func TestPatternMemoSameAsParsing(t *testing.T) {
	var all []string
	for _, rules := range [][]PathRule{Defaults().DenyRead, Defaults().DenyWrite, Defaults().DenyExec} {
		for _, r := range rules {
			all = append(all, r.Pattern)
		}
	}
	all = append(all, ".env", "*.pem", "id_rsa*", "~/.ssh/", "~/.ssh/**", "/etc/shadow", "secrets/", "a//b", "./x", "~",
		"", "!x", "a?b", "~root/x", " x", "x/ y", "*a*")
	if len(all) < 50 {
		t.Fatalf("only %d patterns: the defaults are not read", len(all))
	}
	for _, s := range all {
		want, werr := parsePatternUncached(s)
		for i := range 3 {
			got, err := parsePattern(s)
			if got != want || fmt.Sprint(err) != fmt.Sprint(werr) {
				t.Fatalf("%q, call %d: %+v, %v; parsing gives %+v, %v", s, i, got, err, want, werr)
			}
		}
		if _, kept := patternCache.get(s); kept != (werr == nil) {
			t.Errorf("%q: remembered %v, valid %v", s, kept, werr == nil)
		}
	}
	for i := range maxMemoPatterns + 10 {
		if _, err := parsePattern(fmt.Sprintf("file%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := patternCache.len(); n > maxMemoPatterns {
		t.Fatalf("the memo holds %d patterns, over its bound %d", n, maxMemoPatterns)
	}
}

// BenchmarkMergeDefaults merges the default policy (as the agent does twice
// per sandbox: the policy record check and the compile) with the pattern
// memo on and off, side by side.
func BenchmarkMergeDefaults(b *testing.B) {
	for _, off := range []bool{true, false} {
		name := "memo"
		if off {
			name = "parse"
		}
		b.Run(name, func(b *testing.B) {
			patternMemoOff = off
			defer func() { patternMemoOff = false }()
			for b.Loop() {
				Merge(nil, nil, true)
			}
		})
	}
}
