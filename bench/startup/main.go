// Command startup times whole-process start-ups side by side: each round
// runs every case once, in an order that rotates from round to round, and
// reports per case the median wall time and peak RSS with their spread, and
// per round the ratio of each case to a reference case, summarized the
// same way (bench.Summarize). bench/startup.sh runs it against the peers.
//
//	startup -rounds 15 -ref bwrap,srt -tsv raw.tsv \
//	    'bare=true' 'bwrap=bwrap --unshare-all --ro-bind / / true' \
//	    'aigate=AIGATE_SOCKET=/tmp/s HOME=/tmp/h aigate run -- true'
//
// A case is NAME=[KEY=VALUE...] ARGV...: leading words with a '=' are set
// in its environment, the rest is the command, split on spaces (no
// quoting). A case that fails stops the benchmark: a figure of a command
// that did not run is meaningless.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/aigate-dev/aigate/bench"
)

type benchCase struct {
	name string
	env  []string
	argv []string
	wall []float64 // ms
	cpu  []float64 // ms, user + system
	rss  []float64 // MiB
}

func parse(s string) (*benchCase, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return nil, fmt.Errorf("case %q: want NAME=[KEY=VALUE...] COMMAND...", s)
	}
	c := &benchCase{name: name}
	for _, w := range strings.Fields(rest) {
		if len(c.argv) == 0 && strings.Contains(w, "=") {
			c.env = append(c.env, w)
		} else {
			c.argv = append(c.argv, w)
		}
	}
	if len(c.argv) == 0 {
		return nil, fmt.Errorf("case %q: no command", s)
	}
	return c, nil
}

// run runs c once and records its wall time, its CPU time and peak RSS
// (the sum, and the largest, of the process and the descendants it waited
// for, as wait4 reports them).
func (c *benchCase) run() error {
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Env = append(os.Environ(), c.env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", c.name, err, out.String())
	}
	c.wall = append(c.wall, float64(d.Microseconds())/1000)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		c.rss = append(c.rss, float64(ru.Maxrss)/1024)
	}
	c.cpu = append(c.cpu, float64((cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()).Microseconds())/1000)
	return nil
}

func main() {
	rounds := flag.Int("rounds", 15, "rounds (each runs every case once)")
	warm := flag.Int("warmup", 2, "rounds run first and discarded")
	refs := flag.String("ref", "", "comma-separated cases the ratios are taken against (default: the first)")
	tsv := flag.String("tsv", "", "write every measurement to this file (round, case, ms, MiB, cpu ms)")
	metric := flag.String("metric", "wall", "what the ms figures and the ratios are of: wall, or cpu (user + system time: less moved by the load of a shared machine than the wall time, but blind to waits)")
	flag.Parse()
	if *metric != "wall" && *metric != "cpu" {
		fmt.Fprintln(os.Stderr, "startup: -metric is wall or cpu")
		os.Exit(2)
	}
	var cases []*benchCase
	for _, a := range flag.Args() {
		c, err := parse(a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "startup:", err)
			os.Exit(2)
		}
		cases = append(cases, c)
	}
	if len(cases) == 0 {
		fmt.Fprintln(os.Stderr, "usage: startup [-rounds N] [-ref NAME] [-metric wall|cpu] [-tsv FILE] NAME=COMMAND...")
		os.Exit(2)
	}
	var refCases []*benchCase
	for _, name := range strings.Split(*refs, ",") {
		for _, c := range cases {
			if c.name == name {
				refCases = append(refCases, c)
			}
		}
	}
	if len(refCases) == 0 {
		refCases = cases[:1]
	}
	for r := range *warm + *rounds {
		for k := range cases {
			c := cases[(k+r)%len(cases)]
			if err := c.run(); err != nil {
				fmt.Fprintln(os.Stderr, "startup:", err)
				os.Exit(1)
			}
		}
		if r < *warm {
			for _, c := range cases {
				c.wall, c.cpu, c.rss = nil, nil, nil
			}
		}
	}
	if *tsv != "" {
		var b strings.Builder
		b.WriteString("round\tcase\tms\tMiB\tcpu_ms\n")
		for _, c := range cases {
			for i := range c.wall {
				fmt.Fprintf(&b, "%d\t%s\t%.3f\t%.1f\t%.3f\n", i, c.name, c.wall[i], c.rss[i], c.cpu[i])
			}
		}
		if err := os.WriteFile(*tsv, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "startup:", err)
			os.Exit(1)
		}
	}
	// One row per case and reference: name, median ms (wall or CPU, as
	// -metric says), q1, q3, min, max,
	// median MiB, the reference, and the per-round ratio to it (median,
	// q1, q3, min, max); tab separated, for bench/startup.sh.
	fmt.Println("case\tms\tms_q1\tms_q3\tms_min\tms_max\tMiB\tref\tratio\tratio_q1\tratio_q3\tratio_min\tratio_max")
	for _, refc := range refCases {
		for _, c := range cases {
			ms, ref := c.wall, refc.wall
			if *metric == "cpu" {
				ms, ref = c.cpu, refc.cpu
			}
			w, m := bench.Summarize(ms), bench.Summarize(c.rss)
			ratios := make([]float64, len(ms))
			for i := range ms {
				ratios[i] = ms[i] / ref[i]
			}
			x := bench.Summarize(ratios)
			fmt.Printf("%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\n",
				c.name, w.Median, w.Q1, w.Q3, w.Min, w.Max, m.Median, refc.name, x.Median, x.Q1, x.Q3, x.Min, x.Max)
		}
	}
}
