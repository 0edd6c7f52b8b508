//go:build linux

package forksafe

import (
	"os/exec"
	"testing"
)

// BenchmarkStart compares a fork and exec of true(1) through cmd.Start
// and through Start in a process that answers permission events (the
// collector turned off and run once per fork); read the two side by side,
// as a ratio.
func BenchmarkStart(b *testing.B) {
	path, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	// Some live heap, as an agent has.
	keep := make([][]byte, 0, 4096)
	for range 4096 {
		keep = append(keep, make([]byte, 4096))
	}
	for _, bc := range []struct {
		name  string
		start func(*exec.Cmd) error
	}{{"cmd.Start", (*exec.Cmd).Start}, {"forksafe.Start", Start}} {
		b.Run(bc.name, func(b *testing.B) {
			Answering()
			for b.Loop() {
				cmd := exec.Command(path)
				if err := bc.start(cmd); err != nil {
					b.Fatal(err)
				}
				if err := cmd.Wait(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	_ = keep
}
