//go:build linux

package lsm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// BenchmarkOpenClose measures open+close of an allowed file by a helper
// process outside a sandbox while the programs are attached, and inside a
// sandbox whose policy has every rule kind, each against the same helper in
// the same place with file_open detached (no aigate program runs on that
// path then), interleaved over bench.Rounds() rounds of b.N opens
// (bench/README.md).
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
	b.Cleanup(func() { // before Close, which expects every link
		if err := setFileOpen(l, true); err != nil {
			b.Error(err)
		}
	})
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
	for _, place := range []struct {
		name string
		sb   *sandbox
	}{{"outside", nil}, {"inside", sb}} {
		b.Run(place.name, func(b *testing.B) {
			// One helper serves every measurement: in the emulated guest a
			// process start takes longer than the measurement, and the
			// further apart baseline and case are, the more the host's
			// load can differ between them.
			h := startBenchHelper(b, place.sb, target)
			r, err := fileOpenPair(l, h, b.N)
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
			if err := setFileOpen(l, true); err != nil {
				b.Fatal(err)
			}
			runs, err := progRuns(l.obj.Programs(), func() error { _, err := h.measure(b.N); return err })
			if err != nil {
				b.Fatal(err)
			}
			var all time.Duration
			for name, r := range runs {
				b.Logf("%s: %d runs, %.0f ns each", name, r.n, float64(r.t)/float64(r.n))
				all += r.t
			}
			if fo, ok := runs["file_open"]; ok {
				b.ReportMetric(float64(fo.t)/float64(fo.n), "prog-ns/op")
			}
			b.ReportMetric(float64(all)/float64(b.N), "progs-ns/op")
		})
	}
}

// progRun is one program's run count and total run time during progRuns.
type progRun struct {
	n uint64
	t time.Duration
}

// progRuns runs fn with the kernel's run-time accounting on and returns
// the programs of progs that ran during it. Where the kernel refuses the
// accounting it returns an error: the benchmark must say so.
func progRuns(progs map[string]*ebpf.Program, fn func() error) (map[string]progRun, error) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable BPF run-time stats: %w", err)
	}
	defer stats.Close()
	before := map[string]*ebpf.ProgramStats{}
	for name, p := range progs {
		if p == nil {
			continue
		}
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("stats of %s: %w", name, err)
		}
		before[name] = st
	}
	if err := fn(); err != nil {
		return nil, err
	}
	runs := map[string]progRun{}
	for name, st0 := range before {
		st, err := progs[name].Stats()
		if err != nil {
			return nil, fmt.Errorf("stats of %s: %w", name, err)
		}
		if st.RunCount > st0.RunCount {
			runs[name] = progRun{n: st.RunCount - st0.RunCount, t: st.Runtime - st0.Runtime}
		}
	}
	return runs, nil
}

// setFileOpen attaches (on) or detaches the file_open program, the only
// aigate program on the open/close path: detached, an open+close runs as
// on a machine without aigate. Toggling one link instead of all of them
// keeps baseline and case close in time: in the emulated guest each attach
// costs a text patch and an RCU-tasks grace period, tenths of a second.
func setFileOpen(l *Backend, on bool) error {
	return setProgram(l, "file_open", on)
}

// fileOpenPair measures h's opens with file_open detached (the baseline)
// and attached, round after round.
func fileOpenPair(l *Backend, h *benchHelper, n int) (bench.Result, error) {
	return bench.Pair(bench.Rounds(),
		func() (float64, error) {
			if err := setFileOpen(l, false); err != nil {
				return 0, err
			}
			return h.measure(n)
		},
		func() (float64, error) {
			if err := setFileOpen(l, true); err != nil {
				return 0, err
			}
			return h.measure(n)
		})
}

// setProgram attaches (on) or detaches the program name of loader.ProgramOrder().
func setProgram(l *Backend, name string, on bool) error {
	i := slices.Index(loader.ProgramOrder(), name)
	switch {
	case on && l.obj.Links()[i] == nil:
		lk, err := link.AttachLSM(link.LSMOptions{Program: l.obj.Programs()[name]})
		if err != nil {
			return fmt.Errorf("attach LSM program %s: %w", name, err)
		}
		l.obj.Links()[i] = lk
	case !on && l.obj.Links()[i] != nil:
		err := l.obj.Links()[i].Close()
		l.obj.Links()[i] = nil
		return err
	}
	return nil
}

// benchHelper is a helper process that opens and closes one file n times
// for each n written to it and answers with the median batch's ns per open.
type benchHelper struct {
	in  io.WriteCloser
	out *bufio.Scanner
}

func startBenchHelper(tb testing.TB, sb *sandbox, path string) *benchHelper {
	return startServe(tb, sb, "benchserve", path)
}

// startServe starts the helper's serve mode (benchserve, mmapserve) on path.
func startServe(tb testing.TB, sb *sandbox, mode, path string) *benchHelper {
	tb.Helper()
	cmd := exec.Command(os.Args[0], mode, path)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	fd := -1
	if sb != nil {
		fd = int(sb.fd.Fd())
	}
	h := testutil.StartHeld(tb, cmd, fd)
	tb.Cleanup(func() {
		if err := h.Stop(); err != nil { // the helper exits at end of input
			tb.Errorf("bench helper: %v", err)
		}
	})
	return &benchHelper{in: h.In, out: bufio.NewScanner(h.Out)}
}

func (h *benchHelper) measure(n int) (float64, error) {
	if _, err := fmt.Fprintln(h.in, n); err != nil {
		return 0, fmt.Errorf("bench helper: %w", err)
	}
	if !h.out.Scan() {
		return 0, fmt.Errorf("bench helper exited: %v", h.out.Err())
	}
	return strconv.ParseFloat(strings.TrimSpace(h.out.Text()), 64)
}

// BenchmarkMmapExec measures mmap(PROT_READ|PROT_EXEC)+munmap of an
// allowed file, what ld.so does for every shared library, outside a
// sandbox and inside one with exec rules of the kinds that cost most (a
// Paths rule: the path is built; Names rules: every component is looked
// up), each against the same helper with mmap_file detached, as
// BenchmarkOpenClose does.
func BenchmarkMmapExec(b *testing.B) {
	dir, _ := filepath.EvalSymlinks(b.TempDir())
	target := dir + "/usr/lib/x86_64-linux-gnu/libfoo.so.6"
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(target, make([]byte, 4096), 0o755); err != nil {
		b.Fatal(err)
	}
	l := openLSM(b)
	b.Cleanup(func() {
		if err := setProgram(l, "mmap_file", true); err != nil {
			b.Error(err)
		}
	})
	p := compiled(
		ruleSpec{policy.AccessExec, "paths", "/usr/local/bin/tool"},
		ruleSpec{policy.AccessExec, "names", "curl"},
		ruleSpec{policy.AccessExec, "names", "wget"},
		ruleSpec{policy.AccessExec, "names", "nc"},
		ruleSpec{policy.AccessExec, "names", "ssh"},
	)
	sb := addSandbox(b, l, p, policy.ModeEnforce)
	for _, place := range []struct {
		name string
		sb   *sandbox
	}{{"outside", nil}, {"inside", sb}} {
		b.Run(place.name, func(b *testing.B) {
			h := startServe(b, place.sb, "mmapserve", target)
			r, err := bench.Pair(bench.Rounds(),
				func() (float64, error) {
					if err := setProgram(l, "mmap_file", false); err != nil {
						return 0, err
					}
					return h.measure(b.N)
				},
				func() (float64, error) {
					if err := setProgram(l, "mmap_file", true); err != nil {
						return 0, err
					}
					return h.measure(b.N)
				})
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
		})
	}
}

// BenchmarkExecCopy measures fork+exec+wait of an allowed program inside
// a sandbox whose deny_exec binary has another size ("other-size": what
// every exec pays for bprm_copy, a sandbox walk and one hash lookup) and
// of one padded to the denied binary's size ("same-size": IMA hashes the
// whole file, then the exec is allowed), each against the same helper with
// bprm_copy detached, as BenchmarkOpenClose does.
func BenchmarkExecCopy(b *testing.B) {
	dir, _ := filepath.EvalSymlinks(b.TempDir())
	trueBin, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	body, err := os.ReadFile(trueBin)
	if err != nil {
		b.Fatal(err)
	}
	writeBytes(b, dir+"/bin/denied", append(body[:len(body):len(body)], 'x'))
	other := writeBytes(b, dir+"/other-size", body)
	same := writeBytes(b, dir+"/same-size", append(body[:len(body):len(body)], 'y'))
	l := openLSM(b, dir+"/bin")
	if !l.obj.RefusesCopies() {
		testutil.SkipUnlessLSM(b, "bprm_copy is not attached")
	}
	b.Cleanup(func() {
		if err := setProgram(l, "bprm_copy", true); err != nil {
			b.Error(err)
		}
	})
	sb := addSandbox(b, l, compiled(ruleSpec{policy.AccessExec, "names", "denied"}), policy.ModeEnforce)
	for _, c := range []struct{ name, path string }{{"other-size", other}, {"same-size", same}} {
		b.Run(c.name, func(b *testing.B) {
			h := startServe(b, sb, "execserve", c.path)
			r, err := bench.Pair(bench.Rounds(),
				func() (float64, error) {
					if err := setProgram(l, "bprm_copy", false); err != nil {
						return 0, err
					}
					return h.measure(b.N)
				},
				func() (float64, error) {
					if err := setProgram(l, "bprm_copy", true); err != nil {
						return 0, err
					}
					return h.measure(b.N)
				})
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
		})
	}
}

func writeBytes(tb testing.TB, path string, data []byte) string {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		tb.Fatal(err)
	}
	return path
}

// forkExecWait runs path with no arguments and waits for it.
func forkExecWait(path string) error {
	pid, err := syscall.ForkExec(path, []string{path}, &syscall.ProcAttr{Env: []string{}})
	if err != nil {
		return err
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return err
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("%s: %v", path, ws)
	}
	return nil
}

// BenchmarkOpenPty measures open+close of a pseudo-terminal of the
// sandbox's own (its session led inside, as run's pty is by the command)
// by a helper inside the sandbox, and of the same pty by a helper outside,
// each against the same helper with file_open detached, interleaved
// (BenchmarkOpenClose's method). Inside, file_open reads the pty's tty
// and session leader (ptyscope.h); outside it returns at the sandbox
// check.
func BenchmarkOpenPty(b *testing.B) {
	l := openLSM(b)
	b.Cleanup(func() {
		if err := setFileOpen(l, true); err != nil {
			b.Error(err)
		}
	})
	sb := addSandbox(b, l, &policy.Compiled{Mode: policy.ModeEnforce}, policy.ModeEnforce)
	master, slave, err := pty.Open()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { master.Close(); slave.Close() })
	leader := exec.Command("sleep", "600")
	leader.Stdin = slave
	leader.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, UseCgroupFD: true, CgroupFD: int(sb.fd.Fd())}
	if err := leader.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = leader.Process.Kill(); _ = leader.Wait() })
	for _, place := range []struct {
		name string
		sb   *sandbox
	}{{"outside", nil}, {"inside", sb}} {
		b.Run(place.name, func(b *testing.B) {
			h := startBenchHelper(b, place.sb, slave.Name())
			r, err := fileOpenPair(l, h, b.N)
			if err != nil {
				b.Fatal(err)
			}
			r.Report(b)
		})
	}
}
