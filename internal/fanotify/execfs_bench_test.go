//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
)

// "execloop PATH N": fork, exec and wait for PATH N times, print the
// median batch's ns per run (bench.Batched). The helper hosts no backend:
// plain os/exec is safe here.
var _ = registerHelper("execloop", func(args []string) string {
	n, _ := strconv.Atoi(args[1])
	ns, err := bench.Batched(n, func() error { return exec.Command(args[0]).Run() })
	if err != nil {
		return err.Error()
	}
	return strconv.FormatFloat(ns, 'f', 1, 64)
})

// BenchmarkExecFS measures what the filesystem exec marks (execfs.go) add
// to an exec of /bin/true (fork, exec, wait), from a helper outside and
// inside a sandbox (of a user's: uid 1000) whose policy has a deny_exec
// binary to compare copies with. Baseline: a backend enforcing the same
// sandbox without the filesystem marks (noFSExec: the backend before
// them, where /bin/true's exec reached no mark); case: with them, and
// with the ignore marks of the directories only root can write
// (execignore.go: /usr/bin, asked for at the first exec from it, and the
// loader's), or, in the noignore cases, without those (noExecIgnore: the
// backend before them, every exec a round trip). Baseline and case
// alternate (bench.Pair), each round opening its own backend.
func BenchmarkExecFS(b *testing.B) {
	e := newEnv(b, nil)
	if err := e.b.Close(); err != nil {
		b.Fatal(err)
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	// The denied binary: not true itself, nor of its size (a copy of
	// true is refused inside, as it should be), but a file of that size
	// plus one byte: exec of true pays the size lookup only.
	denied := e.copyBin(filepath.Join(e.bin, "mytool"))
	if f, err := os.OpenFile(denied, os.O_APPEND|os.O_WRONLY, 0); err != nil {
		b.Fatal(err)
	} else if _, err := f.Write([]byte{0}); err != nil || f.Close() != nil {
		b.Fatal(err)
	}
	g, cgFD := benchCgroup(b, "fanexecbench")
	c, err := policy.Compile(&policy.Policy{DenyRead: rules(".env"), DenyExec: rules("mytool")}, policy.Env{Home: e.home, ProjectRoot: e.project})
	if err != nil {
		b.Fatal(err)
	}
	sb := &enforce.Sandbox{ID: 98, Name: "bench", CgroupID: g.ID, CgroupPath: g.Path, Policy: c, Mode: c.Mode, UID: 1000}
	with := func(noFSExec, noIgnore bool, measure func() float64) (float64, error) {
		opts := Options{Home: e.home, ProjectRoot: e.project, ExecDirs: []string{e.bin}, DecisionTimeout: 2 * time.Second,
			noFSExec: noFSExec, noExecIgnore: noIgnore}
		return withSandbox(opts, sb, func(be *Backend) (float64, error) {
			if !noFSExec && !noIgnore {
				// The first exec from /usr/bin asks for its ignore mark;
				// measured is what follows.
				execNs(b, nil, truePath, 1)
				dir, _ := filepath.EvalSymlinks(filepath.Dir(truePath))
				for deadline := time.Now().Add(5 * time.Second); !be.fsexec.ignores(dir); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						return 0, fmt.Errorf("%s got no ignore mark", dir)
					}
				}
			}
			return measure(), nil
		})
	}
	for _, where := range []string{"outside", "inside", "outside-noignore", "inside-noignore"} {
		b.Run(where, func(b *testing.B) {
			var in *os.File
			if strings.HasPrefix(where, "inside") {
				in = cgFD
			}
			noIgnore := strings.HasSuffix(where, "-noignore")
			measure := func() float64 { return execNs(b, in, truePath, b.N) }
			r, err := bench.Pair(bench.Rounds(),
				func() (float64, error) { return with(true, noIgnore, measure) },
				func() (float64, error) { return with(false, noIgnore, measure) })
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
		})
	}
}

// execNs runs the exec loop in a helper (in the cgroup cg is open on, or
// in the test's own for nil) and returns ns per exec.
func execNs(tb testing.TB, cg *os.File, path string, n int) float64 {
	tb.Helper()
	return helperLoop(tb, cg, "execloop", path, n)
}
