//go:build linux

package fanotify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

// "openloop PATH N": open+close PATH N times, print the median batch's ns
// per open (bench.Batched).
var _ = registerHelper("openloop", func(args []string) string {
	n, _ := strconv.Atoi(args[1])
	ns, err := bench.Batched(n, func() error {
		fd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Close(fd)
	})
	if err != nil {
		return err.Error()
	}
	return strconv.FormatFloat(ns, 'f', 1, 64)
})

// BenchmarkOpen measures open+close of files as fanotify sees them, from a
// helper process outside and inside a sandbox, each as a ratio to the same
// open from the same place with no aigate at all: no fanotify group, no
// marks. Baseline and case alternate over bench.Rounds() rounds of b.N
// opens each (see bench/README.md); the case's rounds each open a backend,
// add the sandbox, measure, remove it and close the backend, so the
// baseline between them is the machine without aigate. The cases:
//
//	unmarked     a file in a directory nothing marks
//	ignored      an unrelated file in a marked directory, with an ignore mask
//	child-event  an unrelated file in a marked directory created after Add:
//	             its first open is a round trip (allowed), which gives it an
//	             ignore mask (ignorenew.go); the later opens are not
//	marked       a deny_write file opened read-only: a round trip (allowed;
//	             inside a sandbox this includes reading /proc/TID/syscall)
//	exec-binary  a deny_exec file opened read-only (cat): a round trip,
//	             allowed; inside a sandbox the opener's /proc/TID/exe is
//	             compared with the dynamic loaders (loader.go)
func BenchmarkOpen(b *testing.B) {
	e := newEnv(b, nil)
	// Only the benchmark's own backends run: one per measured round.
	if err := e.b.Close(); err != nil {
		b.Fatal(err)
	}
	opts := Options{Home: e.home, ProjectRoot: e.project, ExecDirs: []string{e.bin}, DecisionTimeout: 2 * time.Second}
	files := map[string]string{
		"unmarked": e.write(filepath.Join(b.TempDir(), "plain"), "x"),
		"ignored":  e.write(filepath.Join(e.project, "src", "main.go"), "x"),
		"marked":   e.write(filepath.Join(e.project, "ci.yaml"), "x"),
	}
	files["exec-binary"] = e.copyBin(filepath.Join(e.project, "tools", "runme"))
	g, cgFD := benchCgroup(b, "fanbench")
	c, err := policy.Compile(&policy.Policy{DenyRead: rules(".env"), DenyWrite: rules("ci.yaml"), DenyExec: rules("tools/runme")}, policy.Env{Home: e.home, ProjectRoot: e.project})
	if err != nil {
		b.Fatal(err)
	}
	sb := &enforce.Sandbox{ID: 99, Name: "bench", CgroupID: g.ID, CgroupPath: g.Path, Policy: c, Mode: c.Mode}
	children := 0

	// withAigate runs measure while a backend enforces sb. For child-event
	// the file is created after Add, so it gets no ignore mask from the
	// walk, only at an open that reaches the reader.
	withAigate := func(name string, measure func(path string) float64) (float64, error) {
		return withSandbox(opts, sb, func(*Backend) (float64, error) {
			path := files[name]
			if name == "child-event" {
				children++
				path = e.write(filepath.Join(e.project, "src", fmt.Sprintf("later%d.go", children)), "x")
				files[name] = path // the next baseline opens the same file
			}
			return measure(path), nil
		})
	}

	for _, name := range []string{"unmarked", "ignored", "child-event", "marked", "exec-binary"} {
		for _, where := range []string{"outside", "inside"} {
			b.Run(where+"/"+name, func(b *testing.B) {
				var in *os.File
				if where == "inside" {
					in = cgFD
				}
				measure := func(path string) float64 { return helperNs(b, in, path, b.N) }
				if files[name] == "" {
					files[name] = e.write(filepath.Join(e.project, "src", "later0.go"), "x")
				}
				r, err := bench.Pair(bench.Rounds(),
					func() (float64, error) { return measure(files[name]), nil },
					func() (float64, error) { return withAigate(name, measure) })
				if err != nil {
					b.Fatal(err)
				}
				r.Report(b)
			})
		}
	}
}

// helperNs runs the open loop in a helper (in the cgroup cg is open on, or
// in the test's own for nil) and returns ns per open.
func helperNs(tb testing.TB, cg *os.File, path string, n int) float64 {
	tb.Helper()
	return helperLoop(tb, cg, "openloop", path, n)
}

// helperLoop runs helper op ("openloop", "execloop") on path n times in a
// helper process placed as helperNs says, and returns ns per operation.
func helperLoop(tb testing.TB, cg *os.File, op, path string, n int) float64 {
	tb.Helper()
	cmd := exec.Command(os.Args[0], path, strconv.Itoa(max(n, 1)))
	cmd.Env = append(os.Environ(), helperEnv+"="+op)
	if cg != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	}
	out, err := output(cmd)
	if err != nil {
		tb.Fatalf("%s %s: %v", op, path, err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		tb.Fatalf("%s %s printed %q", op, path, out)
	}
	return v
}

// BenchmarkOpenPty measures open+close of the sandbox's own pseudo-terminal
// (its session led inside, as run's pty is by the command; opened by name
// as a process of another session does) from a helper outside and inside
// the sandbox, as a ratio to the same open with no aigate at all. With a
// sandbox, every pty open on the machine is reported to the watcher (the
// /dev/pts mark, ptsopen.go): the opener does not wait for the agent, but
// queues an event, and the agent checks an open from inside against the

// benchCgroup makes a cgroup for a benchmark's sandbox, removed when it
// ends, and opens it for a helper's CLONE_INTO_CGROUP.
func benchCgroup(b *testing.B, name string) (*cgroup.Group, *os.File) {
	b.Helper()
	g, err := cgroup.Create("aigate-test", fmt.Sprintf("%s%d", name, os.Getpid()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = g.Remove() })
	cgFD, err := g.OpenFD()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cgFD.Close() })
	return g, cgFD
}

// withSandbox opens a backend with opts, adds sb to it, runs measure and
// closes it again: a benchmark's case, against a baseline without aigate.
func withSandbox(opts Options, sb *enforce.Sandbox, measure func(be *Backend) (float64, error)) (float64, error) {
	be, err := Open(opts)
	if err != nil {
		return 0, err
	}
	defer be.Close()
	if err := be.Add(context.Background(), sb); err != nil {
		return 0, err
	}
	defer be.Remove(sb.ID)
	return measure(be)
}

// sandbox's processes in /proc, on the same CPUs.
func BenchmarkOpenPty(b *testing.B) {
	e := newEnv(b, nil)
	if err := e.b.Close(); err != nil {
		b.Fatal(err)
	}
	opts := Options{Home: e.home, ProjectRoot: e.project, ExecDirs: []string{e.bin}, DecisionTimeout: 2 * time.Second}
	master, slave, err := pty.Open()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { master.Close(); slave.Close() })
	g, cgFD := benchCgroup(b, "fanptybench")
	// The sandbox's own pty: its session is led inside (as run's pty is
	// by the command), so that the opens from inside are allowed.
	leader := exec.Command("sleep", "600")
	leader.Stdin = slave
	leader.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, UseCgroupFD: true, CgroupFD: int(cgFD.Fd())}
	if err := forksafe.Start(leader); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = leader.Process.Kill(); _ = leader.Wait() })
	c, err := policy.Compile(&policy.Policy{}, policy.Env{Home: e.home, ProjectRoot: e.project})
	if err != nil {
		b.Fatal(err)
	}
	sb := &enforce.Sandbox{ID: 98, Name: "ptybench", CgroupID: g.ID, CgroupPath: g.Path, Policy: c, Mode: c.Mode}
	for _, where := range []string{"outside", "inside"} {
		b.Run(where, func(b *testing.B) {
			var in *os.File
			if where == "inside" {
				in = cgFD
			}
			r, err := bench.Pair(bench.Rounds(),
				func() (float64, error) { return helperNs(b, in, slave.Name(), b.N), nil },
				func() (float64, error) {
					return withSandbox(opts, sb, func(*Backend) (float64, error) { return helperNs(b, in, slave.Name(), b.N), nil })
				})
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
		})
	}
}
