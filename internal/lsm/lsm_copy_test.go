//go:build linux

package lsm

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestLSMExecCopy: deny_exec means the program, not its file name. A copy
// of a denied binary, renamed or in /tmp, is refused by bprm_copy (same
// size, then the same SHA-256 through bpf_ima_file_hash), and an
// executable mapping of it by mmap_copy, with an event naming the copy and
// the original's rule. Controls: a file of the same
// size with other content runs (so IMA did hash it: failing closed would
// refuse it), a file of another size runs, the original runs outside the
// sandbox, and reading the copy is not executing it.
func TestLSMExecCopy(t *testing.T) {
	dir := tempDir(t)
	l := openLSM(t, dir+"/bin")
	if !l.obj.RefusesCopies() {
		_, why := loader.ExecCopies()
		testutil.SkipUnlessLSM(t, "bprm_copy is not attached: "+why)
	}
	body := fmt.Sprintf("#!/bin/sh\n# the denied tool of test %d\nexit 0\n", os.Getpid())
	tool := writeExec(t, dir+"/bin/tool", body)
	renamed := writeExec(t, dir+"/elsewhere/renamed", body)
	inTmp := writeExec(t, fmt.Sprintf("/tmp/aigate-lsm-copy-%d", os.Getpid()), body)
	sameSize := writeExec(t, dir+"/elsewhere/same-size", strings.Replace(body, "denied", "dEnied", 1))
	otherSize := writeExec(t, dir+"/elsewhere/other-size", body+"# longer\n")

	p := compiled(ruleSpec{policy.AccessExec, "names", "tool"}) // 1
	sb := addSandbox(t, l, p, policy.ModeEnforce)

	expectDenied(t, l, sb, events.KindExec, tool, 1, "exec", tool)
	expectDenied(t, l, sb, events.KindExec, renamed, 1, "exec", renamed)
	expectDenied(t, l, sb, events.KindExec, inTmp, 1, "exec", inTmp)
	// What ld.so does with a program it runs (ld.so /tmp/x): mmap_copy.
	expectDenied(t, l, sb, events.KindExec, renamed, 1, "mmapexec", renamed)
	expectAllowed(t, sb, "mmapexec", sameSize)
	expectAllowed(t, sb, "exec", sameSize)
	expectAllowed(t, sb, "exec", otherSize)
	expectAllowed(t, sb, "open", renamed, "r")
	expectAllowed(t, nil, "exec", tool)
	expectAllowed(t, nil, "exec", inTmp)
	noEvent(t, l)
	// IMA hashed (the same-size file ran): status must not say otherwise.
	if _, why := loader.ExecCopies(); why != "" {
		t.Errorf("ExecCopies says %q on a kernel whose IMA hashed the files above", why)
	}
}

func writeExec(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.MkdirAll(path[:strings.LastIndexByte(path, '/')], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	return path
}
