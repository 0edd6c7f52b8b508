//go:build linux

package main

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/policy"
)

// TestPolicy checks that the generated policy parses and holds the rule
// count the figures are labelled with: deny_read and allow_net entries,
// besides the fixed deny_write file and loopback address.
func TestPolicy(t *testing.T) {
	for _, n := range []int{10, 100, 1000, 10000} {
		c, err := policy.Parse("config.yaml", []byte(Policy(n)))
		if err != nil {
			t.Fatalf("%d rules: %v", n, err)
		}
		if got := len(c.DenyRead) + len(c.AllowNet) - 1; got != n {
			t.Errorf("Policy(%d) has %d deny_read + allow_net rules besides the loopback address", n, got)
		}
		if len(c.DenyWrite) != 1 {
			t.Errorf("Policy(%d): deny_write %v, want the one protected file", n, c.DenyWrite)
		}
	}
}

func TestInts(t *testing.T) {
	if got := ints("10, 100,x,0,1000"); !slices.Equal(got, []int{10, 100, 1000}) {
		t.Errorf("ints = %v", got)
	}
}

// TestCPUTicks: the idle-CPU figure reads utime+stime, which grow while
// this process computes (a wrong field would stay put or fail to parse).
func TestCPUTicks(t *testing.T) {
	pid := os.Getpid()
	t0, err := cpuTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1 << 20 {
			x += i
		}
		t1, err := cpuTicks(pid)
		if err != nil {
			t.Fatal(err)
		}
		if t1 > t0 {
			return
		}
	}
	t.Fatalf("utime+stime did not grow in 10 s of computing (%d)", x)
}
