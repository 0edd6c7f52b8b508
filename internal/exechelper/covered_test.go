//go:build linux

package exechelper

import (
	"testing"

	"github.com/aigate-dev/aigate/internal/landlock"
)

// TestCheckCovered: the helper refuses to start the command when the
// domain it is about to enter no longer covers a tree the agent was told
// it covers (the fanotify backend then has no inode mark on its files).
func TestCheckCovered(t *testing.T) {
	ident := func(p string) (string, error) { return p, nil }
	tree := "/home/u/.cache/go-build"
	fixed := landlock.Ruleset{HandledFS: landlock.AccessWrite, Rules: []landlock.Rule{
		{Path: "/home/u/.cache", Access: landlock.AccessFixed}, {Path: "/home/u/proj", Access: landlock.AccessWrite}}}
	wide := landlock.Ruleset{HandledFS: landlock.AccessWrite, Rules: []landlock.Rule{
		{Path: "/home/u/.cache", Access: landlock.AccessWrite}}}
	for _, tc := range []struct {
		name    string
		covered []string
		rs      landlock.Ruleset
		abi     int
		err     bool
	}{
		{"nothing claimed", nil, wide, 7, false},
		{"covered", []string{tree}, fixed, 7, false},
		{"covered on ABI 1", []string{tree}, fixed, 1, false},
		{"no longer covered", []string{tree}, wide, 7, true},
		{"no Landlock", []string{tree}, fixed, 0, true},
	} {
		err := checkCovered(landlock.Options{Covered: tc.covered}, tc.rs, tc.abi, ident)
		if (err != nil) != tc.err {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
