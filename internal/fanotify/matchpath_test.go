//go:build linux

package fanotify

import (
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// matchPath matches each set once; its answers must stay those of the
// policy's MatchOpen and MatchExec, which match the read set up to three
// times.
func TestMatchPathIsMatchOpenAndExec(t *testing.T) {
	p := &policy.Policy{
		DenyRead:  rules(".env", "*.pem", "~/.ssh/", "secrets/"),
		DenyWrite: rules(".git/hooks/", "ci.yaml", "*.pem", "~/.ssh/config"),
		DenyExec:  rules("curl", "tools/", "*.pem"),
	}
	c, err := policy.Compile(p, policy.Env{Home: "/home/u", ProjectRoot: "/home/u/proj"})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/home/u/proj/.env", "/home/u/proj/x.pem", "/home/u/.ssh/config", "/home/u/proj/ci.yaml",
		"/home/u/proj/.git/hooks/pre-commit", "/usr/bin/curl", "/home/u/proj/tools/run",
		"/home/u/proj/tools/.env", "/home/u/proj/secrets/ci.yaml", "/home/u/proj/main.go", "/",
	} {
		var want fileRules
		if id, ok := c.MatchOpen(path, false); ok {
			want.read = id
		} else if id, ok := c.MatchOpen(path, true); ok {
			want.write = id
		}
		want.exec, _ = c.MatchExec(path)
		if got := matchPath(c, path); got != want {
			t.Errorf("matchPath(%s) = %+v, MatchOpen and MatchExec say %+v", path, got, want)
		}
	}
}
