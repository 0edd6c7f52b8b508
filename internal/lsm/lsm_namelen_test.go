//go:build linux

package lsm

import (
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestLSMNameLengths: the component walk looks up only components whose
// length some Names entry of the set has (lengths of 24 bytes and more
// share one bit). Entries of every length class still match wherever the
// component is, a component one byte shorter or longer than an entry is
// allowed, and so is a long component that differs from a long entry of
// another length.
func TestLSMNameLengths(t *testing.T) {
	l := openLSM(t)
	dir := tempDir(t)
	n23 := strings.Repeat("b", 23)
	n24 := strings.Repeat("c", 24)
	n40 := strings.Repeat("d", 40)
	n126 := strings.Repeat("e", 126)
	sb := addSandbox(t, l, compiled(
		ruleSpec{policy.AccessRead, "names", "k"},  // 1
		ruleSpec{policy.AccessRead, "names", n23},  // 2
		ruleSpec{policy.AccessRead, "names", n24},  // 3
		ruleSpec{policy.AccessRead, "names", n40},  // 4
		ruleSpec{policy.AccessRead, "names", n126}, // 5
	), policy.ModeEnforce)

	for _, tc := range []struct {
		path string
		rule uint32 // 0: allowed
	}{
		{dir + "/a/k", 1},
		{dir + "/k/a/b", 1},
		{dir + "/" + n23 + "/f", 2},
		{dir + "/x/" + n23, 2},
		{dir + "/" + n24 + "/f", 3},
		{dir + "/" + n40 + "/y/f", 4},
		{dir + "/" + n126 + "/f", 5},
		{dir + "/kk/f", 0},
		{dir + "/" + n23[1:] + "/f", 0},
		{dir + "/" + n23 + "b/f", 0},
		{dir + "/" + n24 + "c/f", 0},
		{dir + "/" + n40[1:] + "/f", 0},
		{dir + "/" + n126[1:] + "/f", 0},
	} {
		touch(t, tc.path)
		code, pid := run(t, sb, "open", tc.path, "r")
		if tc.rule == 0 {
			if code != 0 {
				t.Errorf("open(%s) in sandbox: exit %d, want allowed", tc.path, code)
			}
			continue
		}
		if code != exitEPERM {
			t.Errorf("open(%s) in sandbox: exit %d, want EPERM", tc.path, code)
			continue
		}
		ev := nextEvent(t, l)
		if ev.Kind != events.KindFile || ev.Op != events.OpRead || ev.Rule != tc.rule || int(ev.TGID) != pid {
			t.Errorf("open(%s): event %+v, want read rule %d pid %d", tc.path, ev, tc.rule, pid)
		}
	}
	noEvent(t, l)
}
