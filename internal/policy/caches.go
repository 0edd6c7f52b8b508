package policy

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// CacheTool is a tool whose cache a sandbox would otherwise share with the
// user: what it builds or downloads there runs outside at the user's next
// ordinary command (a Go build cache entry is linked without a check, an
// npx package runs, a pip wheel installs). Unless shared_caches names it,
// the tool gets caches of the sandboxes' own (run sets the variables) and
// the user's caches are deny_write (UserCaches).
type CacheTool struct {
	Name string
	// Own are the sandboxes' own caches, beneath SandboxCacheDir.
	Own []string
	// UserCaches are the tool's default cache locations in the home, as
	// deny_write patterns.
	UserCaches []string
	// Public maps an except_read entry of the user's cache to the same
	// content in the sandboxes' (module sources with a credentials/
	// package, npm's content store): excepted there when it is here.
	Public map[string]string
	// SharedWritable are the directories beneath the home that the
	// sandbox's Landlock domain lets the tool write when shared_caches
	// names it (its own caches are in the writable ~/.cache/aigate
	// otherwise; the rest of ~/.cache is read-only).
	SharedWritable []string
}

// CacheTools lists the tools whose caches sandboxes get their own of.
// For cargo and gradle the variable run sets (CARGO_HOME,
// GRADLE_USER_HOME) moves the tool's whole home, not just its cache:
// cargo's bin/, config and credentials, gradle's init scripts,
// properties and wrapper distributions. None of the user's is copied
// there (credentials stay out of reach; init scripts and properties are
// code the sandbox need not run), and the user's whole gradle home is
// deny_write: all of it is read as code by the next gradle outside.
var CacheTools = []CacheTool{
	{Name: "go", Own: []string{"go-build", "go-mod"}, UserCaches: []string{"~/.cache/go-build/", "~/go/pkg/mod/"},
		Public:         map[string]string{"~/go/pkg/mod/": "~/" + SandboxCacheDir + "/go-mod/"},
		SharedWritable: []string{".cache/go-build"}},
	{Name: "npm", Own: []string{"npm"}, UserCaches: []string{"~/.npm/"},
		Public: map[string]string{"~/.npm/_cacache/": "~/" + SandboxCacheDir + "/npm/_cacache/"}},
	{Name: "pip", Own: []string{"pip"}, UserCaches: []string{"~/.cache/pip/"}, SharedWritable: []string{".cache/pip"}},
	{Name: "cargo", Own: []string{"cargo"}, UserCaches: []string{"~/.cargo/registry/", "~/.cargo/git/"},
		Public:         map[string]string{"~/.cargo/registry/": "~/" + SandboxCacheDir + "/cargo/registry/"},
		SharedWritable: []string{".cargo/registry", ".cargo/git"}},
	{Name: "gradle", Own: []string{"gradle"}, UserCaches: []string{"~/.gradle/"},
		Public:         map[string]string{"~/.gradle/caches/": "~/" + SandboxCacheDir + "/gradle/caches/"},
		SharedWritable: []string{".gradle"}},
	{Name: "maven", Own: []string{"maven"}, UserCaches: []string{"~/.m2/repository/"},
		Public:         map[string]string{"~/.m2/repository/": "~/" + SandboxCacheDir + "/maven/"},
		SharedWritable: []string{".m2/repository"}},
}

// SandboxCacheDir holds the sandboxes' own caches (CacheTool.Own),
// relative to the home: shared by every sandbox of the user (a sandbox can
// plant an entry that a later sandbox uses, confined as that one is), never
// read by the tools outside. docs/threat-model.md "Build caches".
const SandboxCacheDir = ".cache/aigate"

// XDGCacheDir is where run points XDG_CACHE_HOME (beneath the home): the
// rest of ~/.cache is read-only inside, as tools outside run what it
// holds.
const XDGCacheDir = SandboxCacheDir + "/xdg"

// SandboxXDGCache reports whether tools inside get XDGCacheDir as their
// cache directory: unless writable: lists ~/.cache itself (the user
// gives the sandbox theirs).
func (p *Policy) SandboxXDGCache() bool {
	return !slices.ContainsFunc(p.Writable, func(r PathRule) bool {
		return strings.TrimRight(r.Pattern, "/") == "~/.cache"
	})
}

// cacheToolNames is the list for messages.
func cacheToolNames() string {
	var names []string
	for _, t := range CacheTools {
		names = append(names, t.Name)
	}
	return strings.Join(names, ", ")
}

// sharedCaches parses shared_caches: a list of CacheTools names.
func (p *parser) sharedCaches(key string, v *yaml.Node) []PathRule {
	var out []PathRule
	for _, s := range p.stringList(key, v, "tool names", "go") {
		if !slices.ContainsFunc(CacheTools, func(t CacheTool) bool { return t.Name == s.Value }) {
			p.errorf(s, "write one of "+cacheToolNames(),
				"%s entry %q is not a tool whose caches aigate separates", key, s.Value)
			continue
		}
		out = append(out, PathRule{Pattern: s.Value, Source: p.source(s)})
	}
	return out
}

// SandboxCaches reports whether the sandbox gets its own caches of tool
// (shared_caches does not name it).
func (p *Policy) SandboxCaches(tool string) bool {
	return !slices.ContainsFunc(p.SharedCaches, func(r PathRule) bool { return r.Pattern == tool })
}

// addCacheRules makes the user's caches of every tool with sandbox caches
// deny_write, as built-in rules: they hold only while the sandbox's tools
// are steered to their own caches, so they go with shared_caches, not with
// allow_write. What the policy's except_read keeps readable in the user's
// caches stays readable in the sandboxes' (the same public content).
func (p *Policy) addCacheRules() {
	for _, t := range CacheTools {
		if !p.SandboxCaches(t.Name) {
			continue
		}
		for _, c := range t.UserCaches {
			p.DenyWrite = appendRules(p.DenyWrite, []PathRule{{Pattern: c}})
		}
		for user, own := range t.Public {
			if slices.ContainsFunc(p.ExceptRead, func(r PathRule) bool { return samePattern(r.Pattern, user) }) {
				p.ExceptRead = appendRules(p.ExceptRead, []PathRule{{Pattern: own}})
			}
		}
	}
}

// samePattern reports whether a and b have the same normal form.
func samePattern(a, b string) bool {
	ka, err1 := parsePattern(a)
	kb, err2 := parsePattern(b)
	return err1 == nil && err2 == nil && ka == kb
}

// sharedCachesMsg is what Merge says of a shared_caches entry.
func sharedCachesMsg(r PathRule) string {
	return fmt.Sprintf("shared_caches entry %q", r.Pattern)
}
