//go:build linux

package loader

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf/link"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/policy"
)

// BenchmarkOpenClose measures open+close of an allowed file by a helper
// process outside a sandbox while the programs are attached, and inside a
// sandbox whose policy has every rule kind, each against the same helper in
// the same place with the programs detached (no aigate), interleaved over
// bench.Rounds() rounds of b.N opens (bench/README.md).
func BenchmarkOpenClose(b *testing.B) {
	dir, _ := filepath.EvalSymlinks(b.TempDir())
	target := dir + "/a/b/c/d/file.txt"
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	l := openLSM(b)
	p := compiled(
		ruleSpec{policy.AccessRead, "paths", dir + "/secret"},
		ruleSpec{policy.AccessRead, "paths", "/home/u/.ssh"},
		ruleSpec{policy.AccessRead, "names", ".env"},
		ruleSpec{policy.AccessRead, "names", ".git"},
		ruleSpec{policy.AccessRead, "prefix", "id_rsa"},
		ruleSpec{policy.AccessRead, "suffix", ".pem"},
		ruleSpec{policy.AccessWrite, "paths", "/etc"},
	)
	sb := addSandbox(b, l, p, policy.ModeEnforce)
	measure := func(sb *sandbox, n int) (float64, error) {
		cmd := exec.Command(os.Args[0], "bench", strconv.Itoa(n), target)
		cmd.Env = append(os.Environ(), helperEnv+"=1")
		cmd.Stderr = os.Stderr
		if sb != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(sb.fd.Fd())}
		}
		out, err := cmd.Output()
		if err != nil {
			return 0, fmt.Errorf("bench helper: %w", err)
		}
		return strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	}
	for _, place := range []struct {
		name string
		sb   *sandbox
	}{{"outside", nil}, {"inside", sb}} {
		b.Run(place.name, func(b *testing.B) {
			r, err := bench.Pair(bench.Rounds(),
				func() (float64, error) {
					if err := detachLSM(l); err != nil {
						return 0, err
					}
					return measure(place.sb, b.N)
				},
				func() (float64, error) {
					if err := attachLSM(l); err != nil {
						return 0, err
					}
					return measure(place.sb, b.N)
				})
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
		})
	}
	if err := attachLSM(l); err != nil { // Close and the cleanups expect them
		b.Fatal(err)
	}
}

// detachLSM closes l's links, so that no program runs: the machine without
// aigate, for a baseline. attachLSM undoes it. Both do nothing when there
// is nothing to do. Only for an unpinned LSM.
func detachLSM(l *LSM) error {
	err := closeLinks(l.links)
	l.links = nil
	return err
}

func attachLSM(l *LSM) error {
	if len(l.links) > 0 {
		return nil
	}
	progs := l.objs.programs()
	for _, name := range lsmProgramOrder {
		lk, err := link.AttachLSM(link.LSMOptions{Program: progs[name]})
		if err != nil {
			return fmt.Errorf("attach LSM program %s: %w", name, err)
		}
		l.links = append(l.links, lk)
	}
	return nil
}
