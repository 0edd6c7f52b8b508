//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestCoveredTreeNoInodeMarks: beneath a deny_write tree that the
// sandbox's Landlock domain covers (enforce.Sandbox.LandlockCovers), the
// files are protected by their directories' marks (which report opens of
// their entries), not by an inode mark and a stat each: a user's build
// cache holds 100,000 files (issue #15). A file there that a read rule
// or exec rule matches too keeps its inode mark, and outside the tree
// nothing changes.
func TestCoveredTreeNoInodeMarks(t *testing.T) {
	home := t.TempDir()
	gb := filepath.Join(home, ".cache", "go-build")
	sub := filepath.Join(gb, "00")
	other := filepath.Join(home, "conf")
	for _, d := range []string{sub, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	entries := []string{filepath.Join(sub, "a-d"), filepath.Join(sub, "b-a"), filepath.Join(gb, "trim.txt")}
	secret := filepath.Join(sub, "secret")
	tool := filepath.Join(sub, "evil-tool") // a name rule: found by the walks only
	outside := filepath.Join(other, "ci.yaml")
	for _, f := range append(entries, secret, tool, outside) {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rules := func(ps ...string) []policy.PathRule {
		var out []policy.PathRule
		for _, p := range ps {
			out = append(out, policy.PathRule{Pattern: p})
		}
		return out
	}
	c, err := policy.Compile(&policy.Policy{
		DenyWrite: rules("~/.cache/go-build/", "~/conf/"),
		DenyRead:  rules("~/.cache/go-build/00/secret", ".env"), // .env: the home is walked too
		DenyExec:  rules("evil-tool"),
	}, policy.Env{Home: home, ProjectRoot: home})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		covered []string
		cache   *walkCache
	}{
		{"not covered", nil, nil},
		{"covered", []string{gb}, nil},
		{"covered, walk cache", []string{gb}, newWalkCache()},
		{"covered through a symlink", []string{filepath.Join(home, "gb-link")}, newWalkCache()},
		// Honoured only for a deny_write directory of the policy.
		{"a wider tree claimed", []string{home}, newWalkCache()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "covered through a symlink" {
				if err := os.Symlink(gb, tc.covered[0]); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Remove(tc.covered[0]) })
			}
			for round := 0; round < 2; round++ { // the second from the walk cache's listings
				p, err := newPlanCached(c, home, home, nil, 1000, 1000, tc.cache, nil, tc.covered)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range []string{gb, sub} {
					if p.marks[d]&(unix.FAN_OPEN_PERM|unix.FAN_EVENT_ON_CHILD) != unix.FAN_OPEN_PERM|unix.FAN_EVENT_ON_CHILD {
						t.Errorf("directory %s: mask %#x, want its entries' opens reported", d, p.marks[d])
					}
				}
				for _, f := range entries {
					_, marked := p.marks[f]
					byInode := p.rulesOf(mustKey(t, f), -1).write != 0
					if want := tc.covered == nil || tc.covered[0] == home; marked != want || byInode != want {
						t.Errorf("%s: inode mark %v, protected by inode %v; want %v", f, marked, byInode, want)
					}
				}
				for _, f := range []string{secret, tool, outside} {
					if _, marked := p.marks[f]; !marked || !p.rulesOf(mustKey(t, f), -1).any() {
						t.Errorf("%s: not protected by inode", f)
					}
				}
			}
		})
	}
}
