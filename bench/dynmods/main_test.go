//go:build linux

package main

import (
	"os"
	"testing"

	"github.com/aigate-dev/aigate/internal/cgroup"
)

// BenchmarkFavorDynmods runs the tool's move, fork, thread and make items
// in a test binary, so that vmtest can run them in a guest whose kernel is
// not the host's (each kernel changes how favordynmods works):
//
//	go run ./vmtest --kernel 6.12 --pkg ./bench/dynmods --env AIGATE_BENCH_DYNMODS=1 -- \
//	    -test.run '^$' -test.bench FavorDynmods -test.benchtime 1x
//
// It changes the machine's cgroup v2 options (and puts them back), so it
// runs only when AIGATE_BENCH_DYNMODS is set, as root.
func BenchmarkFavorDynmods(b *testing.B) {
	if os.Getenv("AIGATE_BENCH_DYNMODS") == "" {
		b.Skip("set AIGATE_BENCH_DYNMODS=1 to toggle the machine's favordynmods (as root)")
	}
	orig, err := cgroup.ReadFavorDynmods()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := cgroup.SetFavorDynmods(orig.On); err != nil {
			b.Errorf("restore favordynmods=%v: %v", orig.On, err)
		}
	})
	only := "move,fork,thread"
	if _, err := os.Stat("/usr/bin/make"); err == nil {
		only += ",make"
	}
	for range b.N {
		if err := measure(20, "", "", only); err != nil {
			b.Fatal(err)
		}
	}
}
