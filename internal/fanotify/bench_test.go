//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

// "openloop PATH N": open+close PATH N times, print ns per iteration.
var _ = registerHelper("openloop", func(args []string) string {
	n, _ := strconv.Atoi(args[1])
	return strconv.FormatInt(int64(openLoop(args[0], n))/int64(max(n, 1)), 10)
})

func openLoop(path string, n int) time.Duration {
	start := time.Now()
	for range n {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			panic(err)
		}
		unix.Close(fd)
	}
	return time.Since(start)
}

// BenchmarkOpen measures open+close of files as fanotify sees them, inside
// and outside a sandbox, and reports each as a ratio to the same open with
// no aigate at all ("x_none"). The cases:
//
//	unmarked     a file in a directory nothing marks
//	ignored      an unrelated file in a marked directory, with an ignore mask
//	child-event  an unrelated file in a marked directory created after Add:
//	             no ignore mask, so every open is a round trip (allowed)
//	marked       a deny_write file opened read-only: a round trip (allowed;
//	             inside a sandbox this includes reading /proc/TID/syscall)
func BenchmarkOpen(b *testing.B) {
	const baseN = 20000
	e := newEnv(b, nil)
	plain := e.write(filepath.Join(b.TempDir(), "plain"), "x")
	ignored := e.write(filepath.Join(e.project, "src", "main.go"), "x")
	marked := e.write(filepath.Join(e.project, "ci.yaml"), "x")

	// Baselines before any mark exists, outside and inside a cgroup.
	g, err := cgroup.Create("aigate-test", fmt.Sprintf("fanbench%d", os.Getpid()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = g.Remove() })
	inside := &sbox{Sandbox: &enforce.Sandbox{CgroupPath: g.Path}, g: g}
	files := map[string]string{"unmarked": plain, "ignored": ignored, "marked": marked}
	baseOut := map[string]float64{}
	baseIn := map[string]float64{}
	for name, f := range files {
		openLoop(f, 1000) // warm the dentry cache
		baseOut[name] = float64(openLoop(f, baseN).Nanoseconds()) / baseN
		baseIn[name] = e.helperNs(inside, f, baseN)
	}
	c, err := policy.Compile(&policy.Policy{DenyRead: rules(".env"), DenyWrite: rules("ci.yaml")}, policy.Env{Home: e.home, ProjectRoot: e.project})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.b.Add(b.Context(), &enforce.Sandbox{ID: 99, Name: "bench", CgroupID: g.ID, CgroupPath: g.Path, Policy: c, Mode: c.Mode}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.b.Remove(99) })
	child := e.write(filepath.Join(e.project, "src", "later.go"), "x")
	files["child-event"] = child
	baseOut["child-event"], baseIn["child-event"] = baseOut["ignored"], baseIn["ignored"]

	for _, name := range []string{"unmarked", "ignored", "child-event", "marked"} {
		f := files[name]
		b.Run("outside/"+name, func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				fd, err := unix.Open(f, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				unix.Close(fd)
			}
			ns := float64(time.Since(start).Nanoseconds()) / float64(b.N)
			b.ReportMetric(ns/baseOut[name], "x_none")
		})
		b.Run("inside/"+name, func(b *testing.B) {
			ns := e.helperNs(inside, f, b.N)
			b.ReportMetric(ns, "ns/open")
			b.ReportMetric(ns/baseIn[name], "x_none")
		})
	}
}

// helperNs runs the open loop in a helper inside s and returns ns per open.
func (e *env) helperNs(s *sbox, path string, n int) float64 {
	out := e.run(s, "openloop", path, strconv.Itoa(max(n, 1)))
	v, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		e.t.Fatalf("open loop in sandbox: %q", out)
	}
	return v
}
