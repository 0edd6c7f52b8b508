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

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// "churnloop DIR N": create and unlink N files in DIR, print the median
// batch's ns per create+unlink (bench.Batched).
var _ = registerHelper("churnloop", func(args []string) string {
	n, _ := strconv.Atoi(args[1])
	prefix := filepath.Join(args[0], fmt.Sprintf("churn-%d-", os.Getpid()))
	i := 0
	ns, err := bench.Batched(n, func() error {
		i++
		p := prefix + strconv.Itoa(i)
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		unix.Close(fd)
		return unix.Unlink(p)
	})
	if err != nil {
		return err.Error()
	}
	return strconv.FormatFloat(ns, 'f', 1, 64)
})

// BenchmarkTmpChurn: what watching /tmp by name (above.go) costs when
// others create and delete files there. A helper outside every sandbox
// creates and unlinks files in /tmp; the ratio is its cost per file with
// the backend to without one (bench.Pair), and agent-cpu-ns/file is the
// backend's own CPU time (this process, the helper is another) per file.
// The cases:
//
//	trees      a sandbox whose deny_write file is in the project: /tmp is
//	           not watched (what main did for every deny_write path)
//	above      its deny_write file is in a user's directory in /tmp: that
//	           directory is watched by name, itself for its own moves, /tmp
//	           not at all
//	in-tmp     its deny_write file is directly in /tmp: /tmp is watched
//	           for that name, so every delete there is an event
//	unfiltered in-tmp with the handle+name filter (skip) emptied: every
//	           delete in /tmp has its process placed and directory resolved
func BenchmarkTmpChurn(b *testing.B) {
	e := newEnv(b, nil)
	if e.b.watch == nil {
		testutil.SkipUnlessKernel(b, "no directory watcher")
	}
	if err := e.b.Close(); err != nil {
		b.Fatal(err)
	}
	opts := Options{Home: e.home, ProjectRoot: e.project, ExecDirs: []string{e.bin}, DecisionTimeout: 2 * time.Second}
	dir := fmt.Sprintf("/tmp/aigate-churn-%d", os.Getpid())
	b.Cleanup(func() { os.RemoveAll(dir) })
	file := e.write(filepath.Join(dir, "file"), "x")
	direct := e.write(dir+"-file", "x")
	b.Cleanup(func() { os.Remove(direct) })
	for _, p := range []string{dir, file, direct} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			b.Fatal(err)
		}
	}
	g, _ := benchCgroup(b, "fanchurn")
	for _, name := range []string{"trees", "above", "in-tmp", "unfiltered"} {
		b.Run(name, func(b *testing.B) {
			deny := map[string]string{"trees": e.write(filepath.Join(e.project, "ci.yaml"), "x"), "above": file}[name]
			if deny == "" {
				deny = direct
			}
			c, err := policy.Compile(&policy.Policy{DenyWrite: rules(deny)}, policy.Env{Home: e.home, ProjectRoot: e.project})
			if err != nil {
				b.Fatal(err)
			}
			sb := &enforce.Sandbox{ID: 98, Name: "churn", CgroupID: g.ID, CgroupPath: g.Path, Policy: c, Mode: c.Mode}
			var agentNs, baseNs []float64
			// CPU time of this process per file: the backend's, plus the
			// helper's start, which the baseline's measures alone.
			cpuPer := func(into *[]float64, f func() float64) float64 {
				cpu0 := cpuNs()
				ns := f()
				// What the watcher still has queued is the churn's too.
				time.Sleep(20 * time.Millisecond)
				*into = append(*into, float64(cpuNs()-cpu0)/float64(max(b.N, 1)))
				return ns
			}
			with := func() (float64, error) {
				return withSandbox(opts, sb, func(be *Backend) (float64, error) {
					if name == "unfiltered" {
						be.watch.mu.Lock()
						clear(be.watch.namedID)
						be.watch.mu.Unlock()
					}
					return cpuPer(&agentNs, func() float64 { return churnNs(b, filepath.Dir(dir), b.N) }), nil
				})
			}
			base := func() (float64, error) {
				return cpuPer(&baseNs, func() float64 { return churnNs(b, filepath.Dir(dir), b.N) }), nil
			}
			r, err := bench.Pair(bench.Rounds(), base, with)
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
			// Rounds pair up as in r (the warm-up pair's first entries
			// dropped): the backend's CPU is the case's minus the
			// baseline's of the same round.
			agentNs, baseNs = agentNs[len(agentNs)-len(r.Case):], baseNs[len(baseNs)-len(r.Base):]
			d := make([]float64, len(agentNs))
			for i := range d {
				d[i] = agentNs[i] - baseNs[i]
			}
			s := bench.Summarize(d)
			b.ReportMetric(s.Median, "agent-cpu-ns/file")
			b.ReportMetric(s.Q1, "agent-q1")
			b.ReportMetric(s.Q3, "agent-q3")
		})
	}
}

// churnNs runs the churn loop in a helper outside every sandbox.
func churnNs(tb testing.TB, dir string, n int) float64 {
	tb.Helper()
	cmd := exec.Command(os.Args[0], dir, strconv.Itoa(max(n, 1)))
	cmd.Env = append(os.Environ(), helperEnv+"=churnloop")
	out, err := output(cmd)
	if err != nil {
		tb.Fatalf("churn loop: %v", err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		tb.Fatalf("churn loop printed %q", out)
	}
	return v
}

// cpuNs is this process's CPU time (user and system).
func cpuNs() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
