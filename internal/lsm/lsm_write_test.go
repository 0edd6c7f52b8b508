//go:build linux

package lsm

import (
	"os"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// expectWriteDenied runs the helper in sb and checks EPERM and a file
// event with op write for path and rule.
func expectWriteDenied(t *testing.T, l *Backend, sb *sandbox, path string, rule uint32, args ...string) {
	t.Helper()
	code, pid := run(t, sb, args...)
	if code != exitEPERM {
		t.Errorf("%v: exit %d, want EPERM", args, code)
		return
	}
	ev := nextEvent(t, l)
	if ev.Kind != events.KindFile || ev.Op != events.OpWrite || ev.Path != path || ev.Rule != rule || int(ev.TGID) != pid {
		t.Errorf("%v: event %+v, want file write %s rule %d pid %d", args, ev, path, rule, pid)
	}
}

// TestLSMWritePaths: the writes that do not open the file (rename at either
// end, link at either end, unlink, rmdir, truncate, chmod, chown) are denied
// for deny_write and deny_read rules of every kind, inside the sandbox only.
func TestLSMWritePaths(t *testing.T) {
	l := openLSM(t)
	dir := tempDir(t)
	bashrc := touch(t, dir+"/home/.bashrc")
	gitcfg := touch(t, dir+"/proj/.git/config")
	key := touch(t, dir+"/keys/id.pem")
	other := touch(t, dir+"/other")
	sb := addSandbox(t, l, compiled(
		ruleSpec{policy.AccessWrite, "paths", dir + "/home/.bashrc"}, // 1
		ruleSpec{policy.AccessWrite, "names", ".git"},                // 2
		ruleSpec{policy.AccessRead, "suffix", ".pem"},                // 3
		ruleSpec{policy.AccessWrite, "prefix", "locked"},             // 4
	), policy.ModeEnforce)

	expectWriteDenied(t, l, sb, bashrc, 1, "rename", bashrc, dir+"/x")
	expectWriteDenied(t, l, sb, bashrc, 1, "rename", other, bashrc) // overwrite
	expectWriteDenied(t, l, sb, bashrc, 1, "truncate", bashrc)
	expectWriteDenied(t, l, sb, bashrc, 1, "link", bashrc, dir+"/newname")
	expectWriteDenied(t, l, sb, bashrc, 1, "chmod", bashrc)
	expectWriteDenied(t, l, sb, bashrc, 1, "chown", bashrc)
	expectWriteDenied(t, l, sb, bashrc, 1, "unlink", bashrc)
	expectWriteDenied(t, l, sb, gitcfg, 2, "unlink", gitcfg)
	expectWriteDenied(t, l, sb, dir+"/proj/.git", 2, "rename", dir+"/proj/.git", dir+"/proj/git")
	expectWriteDenied(t, l, sb, key, 3, "link", key, dir+"/k")
	expectWriteDenied(t, l, sb, key, 3, "rename", key, dir+"/k")
	expectWriteDenied(t, l, sb, dir+"/locked.txt", 4, "link", other, dir+"/locked.txt") // new name
	expectWriteDenied(t, l, sb, dir+"/proj/.git/new", 2, "rename", other, dir+"/proj/.git/new")
	noEvent(t, l)

	// What no rule protects stays writable inside the sandbox.
	expectAllowed(t, sb, "rename", other, dir+"/other2")
	expectAllowed(t, sb, "link", dir+"/other2", dir+"/other3")
	expectAllowed(t, sb, "truncate", dir+"/other3")
	expectAllowed(t, sb, "unlink", dir+"/other3")
	if err := os.Mkdir(dir+"/empty", 0o755); err != nil {
		t.Fatal(err)
	}
	expectAllowed(t, sb, "rmdir", dir+"/empty")

	// Outside the sandbox nothing is denied.
	expectAllowed(t, nil, "truncate", bashrc)
	expectAllowed(t, nil, "link", key, dir+"/k")
	expectAllowed(t, nil, "rename", gitcfg, dir+"/config")
	expectAllowed(t, nil, "unlink", bashrc)
	noEvent(t, l)
}
