//go:build linux

package fanotify

import (
	"strconv"
	"testing"

	"github.com/aigate-dev/aigate/internal/cgroup"
)

// TestSandboxAt: the index finds a sandbox for its own cgroup and every
// cgroup below it, and for nothing else, as cgroup.Within over every
// sandbox (the loop it replaced) does.
func TestSandboxAt(t *testing.T) {
	sbs := []*sandbox{{rel: "/aigate/sb1"}, {rel: "/aigate/sb10"}, {rel: "/user.slice/u/aigate/sb2"}}
	b := &Backend{byCgroup: map[string]*sandbox{}}
	for _, s := range sbs {
		b.byCgroup[s.rel] = s
	}
	for _, cg := range []string{
		"/aigate/sb1", "/aigate/sb1/sub", "/aigate/sb1/sub/deeper", "/aigate/sb10", "/aigate/sb10/x",
		"/aigate/sb100", "/aigate/sb", "/aigate/sb1x", "/aigate", "/", "", "/user.slice/u/aigate/sb2/a",
		"/user.slice/u/aigate", "aigate/sb1", "/aigate/sb1/",
	} {
		var want *sandbox
		for _, s := range sbs {
			if cgroup.Within(cg, s.rel) {
				want = s
			}
		}
		if got := b.sandboxAt(cg); got != want {
			t.Errorf("sandboxAt(%q) = %v, want %v", cg, got, want)
		}
	}
}

// BenchmarkSandboxAt places an opener outside every one of 1,000
// sandboxes: by the index (sandboxAt) and by the loop over the sandboxes
// it replaced (scan). Pure computation: compare the two lines.
func BenchmarkSandboxAt(b *testing.B) {
	be := &Backend{byCgroup: map[string]*sandbox{}}
	for i := range 1000 {
		s := &sandbox{rel: "/aigate.slice/sandbox-" + strconv.Itoa(i)}
		be.byCgroup[s.rel] = s
	}
	const cg = "/user.slice/user-1000.slice/session-2.scope"
	b.Run("index", func(b *testing.B) {
		for b.Loop() {
			if be.sandboxAt(cg) != nil {
				b.Fatal("placed")
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			for _, s := range be.byCgroup {
				if cgroup.Within(cg, s.rel) {
					b.Fatal("placed")
				}
			}
		}
	})
}
