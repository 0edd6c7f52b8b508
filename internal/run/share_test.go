package run

import "testing"

func TestShareable(t *testing.T) {
	for _, tt := range []struct {
		root string
		ok   bool
	}{
		{"/Users/alice/src/proj", true},
		{"/Users/alice/src/proj/", true},
		{"/tmp/work", true},
		{"/Users/alicex", true}, // a sibling, not a parent, of the home
		{"/", false},
		{"/Users/alice", false},
		{"/Users/alice/", false},
		{"/Users", false},
	} {
		if err := shareable(tt.root, "/Users/alice"); (err == nil) != tt.ok {
			t.Errorf("shareable(%q) = %v, want ok=%v", tt.root, err, tt.ok)
		}
	}
}
