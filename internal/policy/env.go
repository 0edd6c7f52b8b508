package policy

import (
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// deny_env and allow_env name environment variables: a name (GITHUB_TOKEN),
// or a name with a "*" at the start, the end or both (*_TOKEN, AWS_*,
// *SECRET*). Names are compared without regard to case: a deny list
// over-matches on purpose. A variable that a deny_env entry matches is
// removed from the command's environment unless an allow_env entry matches
// it too: allow_env is an exception list for what the tool itself needs
// (its own API key), not a cancellation of one deny entry.

// EnvPolicy is the compiled deny_env and allow_env.
type EnvPolicy struct {
	Deny  []PathRule
	Allow []PathRule
}

// checkEnvPattern reports why s is not a usable deny_env/allow_env entry.
func checkEnvPattern(s string) *Error {
	bad := func(hint, format string, args ...any) *Error {
		return valueError(hint, "variable pattern %q: "+format, append([]any{s}, args...)...)
	}
	body := strings.TrimSuffix(strings.TrimPrefix(s, "*"), "*")
	switch {
	case s == "" || body == "":
		return bad("write a variable name such as GITHUB_TOKEN, or *_TOKEN", "matches no name, or every name")
	case strings.Contains(body, "*"):
		return bad(`use "*" only at the start and the end, e.g. *_TOKEN or *SECRET*`, "\"*\" inside a name is not supported")
	}
	for _, r := range body {
		if r != '_' && (r < '0' || r > '9') && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') {
			return bad("variable names hold letters, digits and \"_\"", "%q cannot be part of a variable name", r)
		}
	}
	return nil
}

// matchEnv reports whether the variable name matches the entry pattern.
func matchEnv(pattern, name string) bool {
	p, n := strings.ToUpper(pattern), strings.ToUpper(name)
	pre, suf := strings.HasPrefix(p, "*"), strings.HasSuffix(p, "*") && len(p) > 1
	body := strings.TrimSuffix(strings.TrimPrefix(p, "*"), "*")
	switch {
	case pre && suf:
		return strings.Contains(n, body)
	case pre:
		return strings.HasSuffix(n, body)
	case suf:
		return strings.HasPrefix(n, body)
	}
	return n == body
}

// Removes returns the deny_env entry that removes the variable name, or
// false when it stays (no entry matches, or allow_env keeps it).
func (e *EnvPolicy) Removes(name string) (PathRule, bool) {
	for _, a := range e.Allow {
		if matchEnv(a.Pattern, name) {
			return PathRule{}, false
		}
	}
	for _, d := range e.Deny {
		if matchEnv(d.Pattern, name) {
			return d, true
		}
	}
	return PathRule{}, false
}

// Filter returns environ ("NAME=value" entries) without the variables the
// policy removes, and the sorted names of those removed.
func (e *EnvPolicy) Filter(environ []string) (kept, removed []string) {
	kept = make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := e.Removes(name); ok {
			if !slices.Contains(removed, name) {
				removed = append(removed, name)
			}
			continue
		}
		kept = append(kept, kv)
	}
	slices.Sort(removed)
	return kept, removed
}

// appendEnv adds the entries of add not yet in rules (compared without
// regard to case).
func appendEnv(rules, add []PathRule) []PathRule {
	for _, r := range add {
		if !slices.ContainsFunc(rules, func(x PathRule) bool { return strings.EqualFold(x.Pattern, r.Pattern) }) {
			rules = append(rules, r)
		}
	}
	return rules
}

func (p *parser) envPatterns(key string, v *yaml.Node) []PathRule {
	var out []PathRule
	for _, s := range p.stringList(key, v, "variable names", "GITHUB_TOKEN") {
		if err := checkEnvPattern(s.Value); err != nil {
			err.Msg = key + " " + err.Msg
			p.add(err, s)
			continue
		}
		out = append(out, PathRule{Pattern: s.Value, Source: p.source(s)})
	}
	return out
}
