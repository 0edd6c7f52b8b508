//go:build linux

// Command dynmods measures what the cgroup v2 option favordynmods gives a
// sandbox's start and what it costs every other process on the machine,
// side by side: each round measures every item with the option off and
// with it on (bench.Pair: the order flips every round), and the figure is
// the median of the per-round ratios on/off with its spread.
//
//	dynmods -rounds 20 -run 'AIGATE_SOCKET=/tmp/s HOME=/tmp/h aigate run -- true' \
//	    -peer 'bwrap --unshare-all --ro-bind / / true'
//
// Items: move (one write of a sleeping process's pid into a new cgroup and
// back, the agent's step), run (the -run command, whole process), peer
// (the -peer command, for the run's ratio to it), fork (fork, exec and
// wait of /bin/true), thread (an OS thread started and ended), make (make
// -j2 of 40 targets that each run /bin/true). The option is machine-wide:
// the tool puts it back as it found it on every exit it can see (its end,
// an error, SIGINT, SIGTERM, SIGHUP) and says on stderr when it changed it.
// Root only; bench/dynmods.sh runs it with an agent of its own.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/cgroup"
)

// settle is how long the tool waits after changing the option: turning it
// on waits for a grace period itself, and turning it off lets the readers
// return to their fast path only after one, so a measurement started at
// once would see the transition, not the state.
const settle = 50 * time.Millisecond

type item struct {
	name    string
	unit    string        // what one operation is
	measure bench.Measure // ns per operation
}

// batched measures n operations with bench.Batched.
func batched(n int, op func() error) bench.Measure {
	return func() (float64, error) { return bench.Batched(n, op) }
}

// gap is the idle time before each operation of a spaced measurement. A
// write to cgroup.procs that comes within about a grace period of the
// previous one finds the readers still on their slow path and does not
// wait (internal/cgroup/prime.go); a person starting a tool now and then,
// or a run's start after its own cgroup's last change, does wait. 200 ms
// is several grace periods on this machine.
const gap = 200 * time.Millisecond

// spaced times n operations one by one, each after gap of idle time, and
// returns the median in ns.
func spaced(n int, op func() error) bench.Measure {
	return func() (float64, error) {
		var ns []float64
		for range n {
			time.Sleep(gap)
			start := time.Now()
			if err := op(); err != nil {
				return 0, err
			}
			ns = append(ns, float64(time.Since(start).Nanoseconds()))
		}
		return bench.Summarize(ns).Median, nil
	}
}

func main() {
	rounds := flag.Int("rounds", 20, "rounds (each measures every item off and on)")
	run := flag.String("run", "", "the start-up to time: [KEY=VALUE...] ARGV... (split on spaces)")
	peer := flag.String("peer", "", "a peer's start-up timed beside it (bwrap)")
	only := flag.String("only", "move,run,peer,fork,thread,make", "items to measure")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal(fmt.Errorf("needs root: it remounts the cgroup v2 hierarchy"))
	}
	orig, err := cgroup.ReadFavorDynmods()
	if err != nil {
		fatal(err)
	}
	logf("favordynmods is %s at the start (%s)", onOff(orig.On), orig.Mountpoint)
	restore := func() {
		now, err := cgroup.ReadFavorDynmods()
		if err == nil && now.On == orig.On {
			return
		}
		if err := cgroup.SetFavorDynmods(orig.On); err != nil {
			fmt.Fprintf(os.Stderr, "dynmods: COULD NOT RESTORE favordynmods=%s on %s: %v\n", onOff(orig.On), orig.Mountpoint, err)
			return
		}
		logf("favordynmods restored to %s", onOff(orig.On))
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		restore()
		fmt.Fprintf(os.Stderr, "dynmods: %v\n", s)
		os.Exit(1)
	}()
	err = measure(*rounds, *run, *peer, *only)
	restore()
	if err != nil {
		fatal(err)
	}
}

func measure(rounds int, run, peer, only string) error {
	items, cleanup, err := makeItems(run, peer, only)
	defer cleanup()
	if err != nil {
		return err
	}
	set := func(on bool) error {
		if err := cgroup.SetFavorDynmods(on); err != nil {
			return err
		}
		time.Sleep(settle)
		return nil
	}
	logf("%d rounds; load %s", rounds, loadavg())
	first := time.Now()
	fmt.Println("item\tunit\toff\ton\tratio\tratio_q1\tratio_q3\tratio_min\tratio_max")
	results := map[string]bench.Result{}
	for _, it := range items {
		r, err := bench.Pair(rounds,
			func() (float64, error) {
				if err := set(false); err != nil {
					return 0, err
				}
				return it.measure()
			},
			func() (float64, error) {
				if err := set(true); err != nil {
					return 0, err
				}
				return it.measure()
			})
		if err != nil {
			return fmt.Errorf("%s: %w", it.name, err)
		}
		results[it.name] = r
		x := r.Ratio()
		fmt.Printf("%s\t%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\n", it.name, it.unit,
			ms(bench.Summarize(r.Base).Median), ms(bench.Summarize(r.Case).Median), x.Median, x.Q1, x.Q3, x.Min, x.Max)
	}
	if a, ok := results["run"]; ok {
		if b, ok := results["peer"]; ok {
			// Not measured in the same instant, but in the same rounds:
			// the run's multiple of its peer with the option off and on.
			for _, state := range []struct {
				name     string
				run, per []float64
			}{{"off", a.Base, b.Base}, {"on", a.Case, b.Case}} {
				xs := make([]float64, len(state.run))
				for i := range xs {
					xs[i] = state.run[i] / state.per[i]
				}
				x := bench.Summarize(xs)
				fmt.Printf("run/peer %s\tx\t\t\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", state.name, x.Median, x.Q1, x.Q3, x.Min, x.Max)
			}
		}
	}
	logf("done in %s; load %s", time.Since(first).Round(time.Second), loadavg())
	return nil
}

func makeItems(run, peer, only string) ([]item, func(), error) {
	var items []item
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	want := map[string]bool{}
	for _, w := range strings.Split(only, ",") {
		want[w] = true
	}
	if want["move"] {
		it, done, err := moveItem()
		if err != nil {
			return nil, cleanup, err
		}
		cleanups = append(cleanups, done)
		items = append(items, it)
	}
	if want["run"] && run != "" {
		items = append(items, commandItem("run", run, 5))
	}
	if want["peer"] && peer != "" {
		items = append(items, commandItem("peer", peer, 5))
	}
	if want["fork"] {
		items = append(items, item{name: "fork", unit: "fork+exec+wait of /bin/true", measure: batched(200, func() error { return exec.Command("/bin/true").Run() })})
	}
	if want["thread"] {
		items = append(items, item{name: "thread", unit: "OS thread start+exit", measure: batched(500, threadOp)})
	}
	if want["make"] {
		it, done, err := makeItem()
		if err != nil {
			return nil, cleanup, err
		}
		cleanups = append(cleanups, done)
		items = append(items, it)
	}
	return items, cleanup, nil
}

// moveItem writes a sleeping child's pid into a cgroup of its own, then
// back into the hierarchy's root, as the agent moves a run's helper into
// its sandbox.
func moveItem() (item, func(), error) {
	g, err := cgroup.Create("aigate-bench", fmt.Sprintf("dynmods%d", os.Getpid()))
	if err != nil {
		return item{}, func() {}, err
	}
	root, _ := cgroup.Mountpoint()
	child := exec.Command("sleep", "3600")
	if err := child.Start(); err != nil {
		_ = os.Remove(g.Path)
		return item{}, func() {}, err
	}
	pid := []byte(strconv.Itoa(child.Process.Pid))
	done := func() {
		_ = child.Process.Kill()
		_ = child.Wait()
		_ = os.Remove(g.Path)
		_ = os.Remove(filepath.Dir(g.Path))
	}
	var back error
	measure := spaced(8, func() error {
		// The move back (untimed, see below) is the previous one.
		if back != nil {
			return back
		}
		if err := os.WriteFile(filepath.Join(g.Path, "cgroup.procs"), pid, 0); err != nil {
			return err
		}
		// Timed too, but cheap: it comes right after the first.
		back = os.WriteFile(filepath.Join(root, "cgroup.procs"), pid, 0)
		return nil
	})
	return item{name: "move", unit: "a pid written to a new cgroup's cgroup.procs, then back (median of 8, each after 200 ms idle)", measure: measure}, done, nil
}

// commandItem runs a command n times per measurement, spaced.
func commandItem(name, spec string, n int) item {
	var env, argv []string
	for _, w := range strings.Fields(spec) {
		if len(argv) == 0 && strings.Contains(w, "=") {
			env = append(env, w)
		} else {
			argv = append(argv, w)
		}
	}
	return item{name: name, unit: "whole process (median of 5, each after 200 ms idle)", measure: spaced(n, func() error {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
		}
		return nil
	})}
}

// threadOp starts an OS thread and ends it: a goroutine that locks its
// thread and returns without unlocking takes the thread with it, so the
// scheduler starts another for the next.
func threadOp() error {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(done)
	}()
	<-done
	return nil
}

// makeItem runs make -j2 over 40 targets that each run /bin/true: a
// build's fork and exec pattern without its compiling.
func makeItem() (item, func(), error) {
	dir, err := os.MkdirTemp("", "aigate-dynmods-make")
	if err != nil {
		return item{}, func() {}, err
	}
	var b strings.Builder
	b.WriteString(".PHONY: all")
	for i := range 40 {
		fmt.Fprintf(&b, " t%d", i)
	}
	b.WriteString("\nall:")
	for i := range 40 {
		fmt.Fprintf(&b, " t%d", i)
	}
	b.WriteString("\n")
	for i := range 40 {
		fmt.Fprintf(&b, "t%d:\n\t@/bin/true\n", i)
	}
	mk := filepath.Join(dir, "Makefile")
	if err := os.WriteFile(mk, []byte(b.String()), 0o644); err != nil {
		return item{}, func() {}, err
	}
	it := item{name: "make", unit: "make -j2, 40 targets of /bin/true", measure: batched(5, func() error {
		out, err := exec.Command("make", "-s", "-j2", "-f", mk).CombinedOutput()
		if err != nil {
			return fmt.Errorf("make: %w: %s", err, out)
		}
		return nil
	})}
	return it, func() { _ = os.RemoveAll(dir) }, nil
}

func ms(ns float64) string { return strconv.FormatFloat(ns/1e6, 'f', 3, 64) + " ms" }

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "dynmods %s: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "dynmods:", err)
	os.Exit(1)
}
