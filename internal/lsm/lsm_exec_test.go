//go:build linux

package lsm

import (
	"os"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

func TestLSMExecRules(t *testing.T) {
	dir := tempDir(t)
	tool := script(t, dir+"/bin/tool")
	curl := script(t, dir+"/bin2/curl")
	ncReal := script(t, dir+"/bin3/nc.openbsd")
	nc := symlink(t, ncReal, dir+"/bin3/nc")
	os.MkdirAll(dir+"/bin4", 0o755)
	myCurl := symlink(t, curl, dir+"/bin4/mycurl")
	wget := script(t, dir+"/bin5/wget")
	wgetLink := dir + "/other/renamed"
	os.MkdirAll(dir+"/other", 0o755)
	if err := os.Link(wget, wgetLink); err != nil {
		t.Fatal(err)
	}
	ok := script(t, dir+"/bin/fine")

	// bin5 is searched for name rules, so wget is denied by inode under
	// any name; the other dirs are not, so they test names and paths.
	l := openLSM(t, dir+"/bin5")
	p := compiled(
		ruleSpec{policy.AccessExec, "paths", tool},   // 1
		ruleSpec{policy.AccessExec, "names", "curl"}, // 2
		ruleSpec{policy.AccessExec, "names", "nc"},   // 3
		ruleSpec{policy.AccessExec, "names", "wget"}, // 4
	)
	sb := addSandbox(t, l, p, policy.ModeEnforce)

	expectDenied(t, l, sb, events.KindExec, tool, 1, "exec", tool)
	expectDenied(t, l, sb, events.KindExec, curl, 2, "exec", curl)
	// Symlink named nc -> nc.openbsd: caught by the name executed.
	expectDenied(t, l, sb, events.KindExec, ncReal, 3, "exec", nc)
	// Symlink mycurl -> curl: caught by the resolved file's name.
	expectDenied(t, l, sb, events.KindExec, curl, 2, "exec", myCurl)
	// Hard link under another name: caught by inode.
	expectDenied(t, l, sb, events.KindExec, wgetLink, 4, "exec", wgetLink)
	expectAllowed(t, sb, "exec", ok)
	// Reading a denied executable is not executing it.
	expectAllowed(t, sb, "open", tool, "r")
	expectAllowed(t, nil, "exec", tool)
	noEvent(t, l)
}
