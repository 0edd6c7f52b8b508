package policy

import (
	"slices"
	"strings"
	"testing"
)

func TestEnvDefaults(t *testing.T) {
	p, _ := Merge(nil, nil, false)
	c := mustCompile(t, p)
	for _, tc := range []struct {
		name    string
		removed bool
	}{
		{"AWS_SECRET_ACCESS_KEY", true},
		{"AWS_SESSION_TOKEN", true},
		{"GITHUB_TOKEN", true},
		{"GH_TOKEN", true},
		{"NPM_TOKEN", true},
		{"MY_CLIENT_SECRET", true},
		{"DB_PASSWORD", true},
		{"PGPASSWORD", true},
		{"SLACK_BOT_TOKEN", true},
		{"STRIPE_API_KEY", true},
		{"github_token", true}, // case does not matter
		{"ANTHROPIC_API_KEY", false},
		{"CLAUDE_CODE_OAUTH_TOKEN", false},
		{"OPENAI_API_KEY", false},
		{"PATH", false},
		{"HOME", false},
		{"TOKENIZERS_PARALLELISM", false},
		{"AWS_REGION", false},
		{"SSH_AUTH_SOCK", false},
	} {
		if _, got := c.Env.Removes(tc.name); got != tc.removed {
			t.Errorf("%s: removed=%v, want %v", tc.name, got, tc.removed)
		}
	}
	kept, removed := c.Env.Filter([]string{"PATH=/bin", "GH_TOKEN=ghp_x", "ANTHROPIC_API_KEY=k", "X_SECRET=a=b", "GH_TOKEN=again"})
	if !slices.Equal(kept, []string{"PATH=/bin", "ANTHROPIC_API_KEY=k"}) || !slices.Equal(removed, []string{"GH_TOKEN", "X_SECRET"}) {
		t.Errorf("Filter: kept %v removed %v", kept, removed)
	}
}

func TestEnvPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		ok      bool
		match   []string
		nomatch []string
	}{
		{"GITHUB_TOKEN", true, []string{"GITHUB_TOKEN", "github_token"}, []string{"GITHUB_TOKEN2", "MY_GITHUB_TOKEN"}},
		{"AWS_*", true, []string{"AWS_X", "AWS_"}, []string{"MY_AWS_X"}},
		{"*_TOKEN", true, []string{"A_TOKEN"}, []string{"A_TOKENS", "TOKEN"}},
		{"*SECRET*", true, []string{"SECRET", "A_SECRET_B"}, []string{"SECRE"}},
		{"", false, nil, nil},
		{"*", false, nil, nil},
		{"**", false, nil, nil},
		{"A*B", false, nil, nil},
		{"A-B", false, nil, nil},
		{"A B", false, nil, nil},
	} {
		err := checkEnvPattern(tc.pattern)
		if (err == nil) != tc.ok {
			t.Errorf("%q: error %v, want ok=%v", tc.pattern, err, tc.ok)
			continue
		}
		for _, n := range tc.match {
			if !matchEnv(tc.pattern, n) {
				t.Errorf("%q does not match %s", tc.pattern, n)
			}
		}
		for _, n := range tc.nomatch {
			if matchEnv(tc.pattern, n) {
				t.Errorf("%q matches %s", tc.pattern, n)
			}
		}
	}
}

// A project file adds denials; its allow_env needs trust.
func TestEnvMerge(t *testing.T) {
	global, err := Parse("/g.yaml", []byte("deny_env: [GH_TOKEN]\nallow_env: [ANTHROPIC_API_KEY]\n"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := Parse("/p/.aigate.yaml", []byte("deny_env: [MY_VAR]\nallow_env: [GH_TOKEN]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, warns := Merge(global, project, false)
	if _, ok := p.Env.Removes("MY_VAR"); !ok {
		t.Error("a project's deny_env does not apply")
	}
	if _, ok := p.Env.Removes("GH_TOKEN"); !ok {
		t.Error("an untrusted project's allow_env applies")
	}
	if len(warns) != 1 || !strings.Contains(warns[0].Msg, "allow_env") {
		t.Errorf("warnings %v", warns)
	}
	p, _ = Merge(global, project, true)
	if _, ok := p.Env.Removes("GH_TOKEN"); ok {
		t.Error("a trusted project's allow_env does not apply")
	}
	if _, err := Parse("/g.yaml", []byte("deny_env: [\"A*B\"]\n")); err == nil || !strings.Contains(err.Error(), "/g.yaml:1") {
		t.Errorf("bad pattern: %v", err)
	}
}
