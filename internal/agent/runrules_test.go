//go:build linux

package agent

import (
	"testing"

	"github.com/aigate-dev/aigate/internal/api"
)

// The deny_exec and except_read rules of a run (the policy's, followed
// where the user's environment moves them, by run) reach the compiled policy;
// an exception that is not a path strictly beneath / or the home (a name,
// a glob, "/" or the home) is refused: it would except every .env and key
// from the name rules.
func TestCompileRunExecAndExceptions(t *testing.T) {
	req := &api.CreateRequest{Home: "/home/u", ProjectRoot: "/home/u/p",
		DenyExec:   []api.RunRule{{Pattern: "/srv/cfg/tool/bin/", By: "$XDG_CONFIG_HOME in place of ~/.config/tool/bin/"}},
		ExceptRead: []api.RunRule{{Pattern: "/srv/cfg/tool/", By: "$XDG_CONFIG_HOME in place of ~/.config/tool/"}}}
	c, _, err := compile(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Exec.Match("/srv/cfg/tool/bin/x"); !ok {
		t.Error("the run's deny_exec rule does not match")
	}
	if _, ok := c.Read.Match("/srv/cfg/tool/client.key"); ok {
		t.Error("the run's exception does not hold")
	}
	if _, ok := c.Read.Match("/srv/cfg/other/client.key"); !ok {
		t.Error("the exception holds beyond its path")
	}
	for _, bad := range []string{"*.key", ".env", "/", "~/", "~", "~/.", "//"} {
		req := &api.CreateRequest{Home: "/home/u", ProjectRoot: "/home/u/p", ExceptRead: []api.RunRule{{Pattern: bad, By: "test"}}}
		if _, _, err := compile(req); err == nil {
			t.Errorf("except_read %q taken", bad)
		}
	}
}
