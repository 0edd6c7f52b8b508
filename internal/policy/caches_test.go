package policy

import (
	"slices"
	"strings"
	"testing"
)

// cacheRules is how many rules the sandbox caches add to the defaults:
// deny_write of the user's caches, except_read of the sandboxes' public
// content (the defaults except the user's).
func cacheRules() int {
	n := 0
	for _, t := range CacheTools {
		n += len(t.UserCaches) + len(t.Public)
	}
	return n
}

// The user's caches are deny_write while the sandbox has its own, and
// shared_caches takes a tool's rules away with its own caches; from a
// project file only when the project is trusted.
func TestSharedCaches(t *testing.T) {
	for _, tc := range []struct {
		name            string
		global, project string
		trusted         bool
		want, wantNot   []string
		sandbox         []string
		warn            string
	}{
		{name: "defaults", want: []string{"~/.cache/go-build/", "~/go/pkg/mod/", "~/.npm/", "~/.cache/pip/",
			"~/.cargo/registry/", "~/.cargo/git/", "~/.gradle/", "~/.m2/repository/"},
			sandbox: []string{"go", "npm", "pip", "cargo", "gradle", "maven"}},
		{name: "global shares go", global: "shared_caches: [go]\n",
			want: []string{"~/.npm/", "~/.cache/pip/"}, wantNot: []string{"~/.cache/go-build/", "~/go/pkg/mod/"},
			sandbox: []string{"npm", "pip", "cargo", "gradle", "maven"}},
		{name: "untrusted project cannot share", project: "shared_caches: [npm]\n",
			want: []string{"~/.npm/"}, sandbox: []string{"go", "npm", "pip", "cargo", "gradle", "maven"},
			warn: `/p/.aigate.yaml:1: shared_caches entry "npm" ignored`},
		{name: "trusted project shares", project: "shared_caches: [npm, pip, gradle]\n", trusted: true,
			want: []string{"~/.cache/go-build/", "~/.cargo/registry/"}, wantNot: []string{"~/.npm/", "~/.cache/pip/", "~/.gradle/"}, sandbox: []string{"go", "cargo", "maven"}},
		{name: "allow_write cannot cancel them", global: "allow_write: [~/.npm/]\n",
			want: []string{"~/.npm/"}, sandbox: []string{"go", "npm", "pip", "cargo", "gradle", "maven"},
			warn: "cancels no deny_write entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g, proj *Config
			if tc.global != "" {
				g = mustParse(t, "~/.aigate/config.yaml", tc.global)
			}
			if tc.project != "" {
				proj = mustParse(t, "/p/.aigate.yaml", tc.project)
			}
			p, warns := Merge(g, proj, tc.trusted)
			got := patterns(p.DenyWrite)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("deny_write lacks %s: %v", w, got)
				}
			}
			for _, w := range tc.wantNot {
				if slices.Contains(got, w) {
					t.Errorf("deny_write has %s: %v", w, got)
				}
			}
			var sandbox []string
			for _, tool := range CacheTools {
				if p.SandboxCaches(tool.Name) {
					sandbox = append(sandbox, tool.Name)
				}
			}
			if !slices.Equal(sandbox, tc.sandbox) {
				t.Errorf("sandbox caches %v, want %v", sandbox, tc.sandbox)
			}
			if tc.warn != "" && !slices.ContainsFunc(warns, func(w Warning) bool { return strings.Contains(w.String(), tc.warn) }) {
				t.Errorf("warnings %v lack %q", warns, tc.warn)
			}
		})
	}
}

// Sharing a tool's caches in the global file takes deny_write rules away:
// a loosening the agent asks about.
func TestSharedCachesLoosens(t *testing.T) {
	before, _ := Merge(mustParse(t, "g", ""), nil, false)
	after, _ := Merge(mustParse(t, "g", "shared_caches: [go]\n"), nil, false)
	got := Loosened(Summarize(before), Summarize(after))
	if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, `"~/.cache/go-build" removed`) }) {
		t.Errorf("Loosened = %v", got)
	}
}

func TestSharedCachesParseError(t *testing.T) {
	_, err := Parse("~/.aigate/config.yaml", []byte("shared_caches: [yarn]\n"))
	if err == nil || !strings.Contains(err.Error(), `~/.aigate/config.yaml:1: shared_caches entry "yarn" is not a tool`) ||
		!strings.Contains(err.Error(), "go, npm, pip, cargo, gradle, maven") {
		t.Errorf("err = %v", err)
	}
}

// The sandboxes' module cache and npm content store are as public as the
// user's: excepted from deny_read name rules (credentials/ in a module)
// when the user's are.
func TestSandboxCachesExceptRead(t *testing.T) {
	p, _ := Merge(nil, nil, false)
	got := patterns(p.ExceptRead)
	for _, want := range []string{"~/.cache/aigate/go-mod/", "~/.cache/aigate/npm/_cacache/",
		"~/.cache/aigate/cargo/registry/", "~/.cache/aigate/gradle/caches/", "~/.cache/aigate/maven/"} {
		if !slices.Contains(got, want) {
			t.Errorf("except_read lacks %s: %v", want, got)
		}
	}
	c := mustCompile(t, p)
	if _, denied := c.Read.Match("/home/u/.cache/aigate/go-mod/google.golang.org/grpc@v1.67.1/credentials/credentials.go"); denied {
		t.Error("a module's credentials/ package in the sandboxes' module cache is denied")
	}
	// Without the user's exception there is none for the sandboxes'.
	p, _ = Merge(mustParse(t, "g", "deny_read: [credentials/]\n"), nil, false)
	if slices.Contains(patterns(p.ExceptRead), "~/.cache/aigate/go-mod/") {
		t.Errorf("except_read: %v", patterns(p.ExceptRead))
	}
	// Shared go caches: nothing added.
	p, _ = Merge(mustParse(t, "g", "except_read: [~/go/pkg/mod/]\nshared_caches: [go]\n"), nil, false)
	if slices.Contains(patterns(p.ExceptRead), "~/.cache/aigate/go-mod/") {
		t.Errorf("except_read: %v", patterns(p.ExceptRead))
	}
}
