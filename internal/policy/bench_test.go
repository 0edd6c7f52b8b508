package policy

import (
	"fmt"
	"testing"

	"github.com/aigate-dev/aigate/bench"
)

// scalePolicy has n file rules, a quarter each of deny_read names,
// "*.ext" suffixes, "prefix*" prefixes and "~/" paths (bench/scale's
// policy, with prefixes in place of its allow_net quarter), plus the
// deny_write file bench/scale opens.
func scalePolicy(n int) *Policy {
	q := n / 4
	var read []string
	for i := range n - 3*q {
		read = append(read, fmt.Sprintf(".secret%d", i))
	}
	for i := range q {
		read = append(read, fmt.Sprintf("*.key%d", i), fmt.Sprintf("token%d*", i), fmt.Sprintf("~/vault/f%d", i))
	}
	return &Policy{DenyRead: rules("g", read...), DenyWrite: rules("g", "~/prot.txt"), DenyExec: rules("g", "curl")}
}

// matchPaths are what an agent is asked about: the deny_write file, a
// source file deep in the project, a denied path, a library.
var matchPaths = []string{
	"/home/u/prot.txt",
	"/home/u/proj/src/internal/policy/match.go",
	"/home/u/vault/f1",
	"/usr/lib/x86_64-linux-gnu/libc.so.6",
}

var matchSink RuleID

// BenchmarkMatch compares matching at 10,000 rules (the case) with
// matching at 10 (the baseline), side by side: the ratio is the cost of
// the rule count. One operation matches one path against the read, exec
// and write sets, as the fanotify backend's decide does for an open.
// "indexed" is FileSet.Match; "scan" is the linear scan it replaced
// (match_ref_test.go), for the before/after.
//
//	go test -run '^$' -bench Match -benchtime=20000x ./internal/policy
func BenchmarkMatch(b *testing.B) {
	env := Env{Home: "/home/u", ProjectRoot: "/home/u/proj"}
	small, err := Compile(scalePolicy(10), env)
	if err != nil {
		b.Fatal(err)
	}
	large, err := Compile(scalePolicy(10000), env)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct {
		name  string
		match func(*FileSet, string) (RuleID, bool)
	}{
		{"indexed", (*FileSet).Match},
		{"scan", refMatch},
	} {
		b.Run(m.name, func(b *testing.B) {
			// bench.Batched: the median batch's cost, so that a
			// measurement during which the process was preempted on
			// this shared machine does not count.
			measure := func(c *Compiled) bench.Measure {
				return func() (float64, error) {
					i := 0
					return bench.Batched(b.N, func() error {
						p := matchPaths[i%len(matchPaths)]
						i++
						r, _ := m.match(&c.Read, p)
						e, _ := m.match(&c.Exec, p)
						w, _ := m.match(&c.Write, p)
						matchSink += r + e + w
						return nil
					})
				}
			}
			r, err := bench.Pair(bench.Rounds(), measure(small), measure(large))
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
		})
	}
}
