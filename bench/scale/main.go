//go:build linux

// Command scale measures how aigate's per-operation cost inside a sandbox
// moves with the number of rules in the policy and with the number of
// sandboxes the agent holds, and the agent's resident memory at each
// sandbox count. bench/scale.sh runs it (as root, in namespaces of its
// own) and plots the result.
//
// It starts its own `aigate agent` (-aigate, socket in a temporary
// directory, no metrics port, no pins, no trust records) and talks to it
// through internal/api as root. Inside each sandbox a worker (this binary
// with -worker) times operations when asked, with bench.Batched:
//
//   - open: open+close of a file no rule names (unmarked);
//   - prot: open+close, read-only, of a deny_write file: allowed, but on the
//     fanotify backend a round trip to the agent;
//   - conn: connect of a UDP socket to an allowed loopback address (the
//     cgroup's sock_addr program).
//
// Rule count: a sandbox with 10 rules and one with N rules (10, 100, 1,000,
// 10,000) are alive together; their workers are measured alternately
// (bench.Pair), so each figure is a ratio N rules / 10 rules taken side by
// side. Sandbox count: the 10-rule sandbox's worker against the same worker
// outside any sandbox, at 1, 100 and 1,000 sandboxes (idle ones hold a
// placed `sleep`). The agent allows 32 sandboxes per owner; root may
// create sandboxes for any uid, so the idle ones are spread over owners
// 60000 and up, 32 each, with a home of their own per owner.
//
// Output: tab-separated rows on stdout (kind, x, op, ratio median, q1, q3,
// min, max, case ns/op, baseline ns/op, agent RSS MiB, agent idle CPU %);
// first a row "idle 0 rss" with only the agent's figures before any
// sandbox exists. The agent's CPU while idle (percent of one CPU over 5 s)
// is measured at each sandbox count before its operations; -1 on the
// rule-count rows.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/api"
)

// baseRules is the rule count the rule-count ratios are taken against.
const baseRules = 10

// perOwner is the agent's default limit of sandboxes per user.
const perOwner = 32

func main() {
	worker := flag.Bool("worker", false, "run as a worker: time operations asked for on stdin")
	free := flag.String("free", "", "worker: the unprotected file")
	prot := flag.String("prot", "", "worker: the deny_write file")
	port := flag.Int("port", 0, "worker: the loopback UDP port to connect to")
	aigate := flag.String("aigate", "bin/aigate", "the aigate binary whose agent is measured")
	rules := flag.String("rules", "10,100,1000,10000", "rule counts")
	boxes := flag.String("sandboxes", "1,100,1000", "sandbox counts")
	ops := flag.Int("n", 2000, "operations per measurement (round trips: a tenth)")
	flag.Parse()
	if *worker {
		if err := runWorker(*free, *prot, *port); err != nil {
			fmt.Fprintln(os.Stderr, "scale worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*aigate, ints(*rules), ints(*boxes), *ops); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// Policy returns a global config with n rules: deny_read names, globs and
// paths and allow_net addresses, a quarter each (the remainder to names),
// besides the two every measured sandbox needs (the deny_write file and
// the loopback address), which are not counted.
func Policy(n int) string {
	var b strings.Builder
	b.WriteString("mode: enforce\nbackend: fanotify\ndeny_write:\n  - ~/prot.txt\ndeny_read:\n")
	q := n / 4
	for i := range n - 3*q {
		fmt.Fprintf(&b, "  - .secret%d\n", i)
	}
	for i := range q {
		fmt.Fprintf(&b, "  - \"*.key%d\"\n", i)
	}
	for i := range q {
		fmt.Fprintf(&b, "  - ~/vault/f%d\n", i)
	}
	b.WriteString("allow_net:\n  - 127.0.0.1\n")
	for i := range q {
		fmt.Fprintf(&b, "  - 10.%d.%d.%d\n", 1+i/65536, i/256%256, i%256)
	}
	return b.String()
}

type env struct {
	self, dir string
	client    *api.Client
	port      int
	ops       int
}

// box is a sandbox with a worker in it (or outside any, when sess is nil).
type box struct {
	sess *api.Session
	cmd  *exec.Cmd
	in   *bufio.Writer
	out  *bufio.Scanner
}

func (e *env) home(name string) (string, error) {
	h := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Join(h, "vault"), 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"free.txt", "prot.txt"} {
		if err := os.WriteFile(filepath.Join(h, f), []byte("x"), 0o644); err != nil {
			return "", err
		}
	}
	return h, nil
}

func (e *env) create(home string, rules int, owner uint32) (*api.Session, error) {
	// No deadline: the session's connection lives on after the call,
	// and a cancelled context would close it.
	return e.client.CreateSandbox(context.Background(), api.CreateRequest{
		Global: &api.File{Path: filepath.Join(home, "config.yaml"), Data: []byte(Policy(rules))},
		Home:   home, ProjectRoot: home, Owner: &owner,
		Command: []string{"scale"}, Path: "/usr/bin:/bin",
	})
}

// worker starts a worker on home's files and places it in sess (none: it
// stays outside every sandbox).
func (e *env) worker(home string, sess *api.Session) (*box, error) {
	cmd := exec.Command(e.self, "-worker", "-free", filepath.Join(home, "free.txt"),
		"-prot", filepath.Join(home, "prot.txt"), "-port", strconv.Itoa(e.port))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &box{sess: sess, cmd: cmd, in: bufio.NewWriter(in), out: bufio.NewScanner(out)}
	if sess != nil {
		if err := sess.Place(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			return nil, err
		}
	}
	return b, nil
}

func (b *box) close() {
	b.cmd.Process.Kill()
	b.cmd.Wait()
	if b.sess != nil {
		b.sess.End(10 * time.Second)
	}
}

// measure asks the worker for n operations of op and returns ns/op.
func (b *box) measure(op string, n int) bench.Measure {
	return func() (float64, error) {
		fmt.Fprintf(b.in, "%s %d\n", op, n)
		if err := b.in.Flush(); err != nil {
			return 0, err
		}
		if !b.out.Scan() {
			return 0, fmt.Errorf("worker %d: no answer to %s (%v)", b.cmd.Process.Pid, op, b.out.Err())
		}
		line := b.out.Text()
		if msg, ok := strings.CutPrefix(line, "error "); ok {
			return 0, fmt.Errorf("worker %s: %s", op, msg)
		}
		return strconv.ParseFloat(line, 64)
	}
}

var opNames = []string{"open", "prot", "conn"}

func (e *env) n(op string) int {
	if op == "prot" {
		return max(1, e.ops/10)
	}
	return e.ops
}

func row(kind string, x int, op string, r bench.Result, rss, cpu float64) {
	s := r.Ratio()
	fmt.Printf("%s\t%d\t%s\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.0f\t%.0f\t%.1f\t%.2f\n", kind, x, op,
		s.Median, s.Q1, s.Q3, s.Min, s.Max,
		bench.Summarize(r.Case).Median, bench.Summarize(r.Base).Median, rss, cpu)
}

func run(aigate string, ruleCounts, boxCounts []int, ops int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "aigate-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	// Something to connect to: connect on UDP needs no listener, but a
	// bound port keeps the address honest.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer pc.Close()
	sock := filepath.Join(dir, "agent.sock")
	agent := exec.Command(aigate, "agent", "--socket", sock, "--metrics-addr", "", "--backend", "fanotify",
		"--pin-dir", "", "--trust-dir", "")
	agentLog, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return err
	}
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	}()
	e := &env{self: self, dir: dir, client: api.NewClient(sock), port: pc.LocalAddr().(*net.UDPAddr).Port, ops: ops}
	for i := 0; ; i++ {
		if _, err := e.client.Status(context.Background()); err == nil {
			break
		} else if i > 100 {
			log, _ := os.ReadFile(agentLog.Name())
			return fmt.Errorf("agent did not answer: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rss := func() float64 { return rssMiB(agent.Process.Pid) }
	rounds := bench.Rounds()
	fmt.Println("kind\tx\top\tratio\tq1\tq3\tmin\tmax\tns\tbase_ns\tagent_MiB\tagent_idle_cpu_pct")
	// The agent idle, no sandbox yet: its start-up done, its memory as a
	// user's agent has it between runs.
	time.Sleep(time.Second)
	fmt.Printf("idle\t0\trss\t0\t0\t0\t0\t0\t0\t0\t%.1f\t%.2f\n", rss(), idleCPU(agent.Process.Pid))

	baseHome, err := e.home("base")
	if err != nil {
		return err
	}
	baseSess, err := e.create(baseHome, baseRules, 0)
	if err != nil {
		return err
	}
	base, err := e.worker(baseHome, baseSess)
	if err != nil {
		return err
	}
	defer base.close()

	// Rule count: N rules against 10, both sandboxes alive.
	for _, n := range ruleCounts {
		h, err := e.home(fmt.Sprintf("rules%d", n))
		if err != nil {
			return err
		}
		s, err := e.create(h, n, 0)
		if err != nil {
			return fmt.Errorf("sandbox with %d rules: %w", n, err)
		}
		w, err := e.worker(h, s)
		if err != nil {
			return err
		}
		for _, op := range opNames {
			r, err := bench.Pair(rounds, base.measure(op, e.n(op)), w.measure(op, e.n(op)))
			if err != nil {
				w.close()
				return fmt.Errorf("%d rules, %s: %w", n, op, err)
			}
			row("rules", n, op, r, rss(), -1)
		}
		w.close()
	}

	// Sandbox count: the 10-rule sandbox against the same worker outside.
	outside, err := e.worker(baseHome, nil)
	if err != nil {
		return err
	}
	defer outside.close()
	var idle []*exec.Cmd
	var idleSess []*api.Session
	defer func() {
		for _, c := range idle {
			c.Process.Kill()
			c.Wait()
		}
		for _, s := range idleSess {
			s.End(10 * time.Second)
		}
	}()
	count := 1
	for _, want := range boxCounts {
		for ; count < want; count++ {
			k := count - 1
			owner := uint32(60000 + k/perOwner)
			h, err := e.home(fmt.Sprintf("owner%d", owner))
			if err != nil {
				return err
			}
			s, err := e.create(h, baseRules, owner)
			if err != nil {
				return fmt.Errorf("sandbox %d: %w", count+1, err)
			}
			idleSess = append(idleSess, s)
			c := exec.Command("sleep", "3600")
			if err := c.Start(); err != nil {
				return err
			}
			idle = append(idle, c)
			if err := s.Place(c.Process.Pid); err != nil {
				return err
			}
		}
		cpu := idleCPU(agent.Process.Pid)
		for _, op := range opNames {
			r, err := bench.Pair(rounds, outside.measure(op, e.n(op)), base.measure(op, e.n(op)))
			if err != nil {
				return fmt.Errorf("%d sandboxes, %s: %w", want, op, err)
			}
			row("sandboxes", want, op, r, rss(), cpu)
		}
	}
	return nil
}

// idleCPU is the CPU time pid takes over 5 s while nothing happens in its
// sandboxes, in percent of one CPU: what holding them costs by itself
// (timers, polling), from utime+stime in /proc/PID/stat.
func idleCPU(pid int) float64 {
	const window = 5 * time.Second
	time.Sleep(time.Second) // the last create's work done
	t0, err0 := cpuTicks(pid)
	time.Sleep(window)
	t1, err1 := cpuTicks(pid)
	if err0 != nil || err1 != nil {
		return -1
	}
	const hz = 100 // USER_HZ: clock ticks per second in /proc, on every Linux architecture Go supports
	return float64(t1-t0) / hz / window.Seconds() * 100
}

func cpuTicks(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	u, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	s, err := strconv.ParseUint(f[12], 10, 64)
	return u + s, err
}

// rssMiB is the resident set of pid, from /proc/PID/status.
func rssMiB(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func runWorker(free, prot string, port int) error {
	ops := map[string]func() error{
		"open": func() error { return openClose(free) },
		"prot": func() error { return openClose(prot) },
		"conn": func() error {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer syscall.Close(fd)
			return syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		},
	}
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		name, count, _ := strings.Cut(in.Text(), " ")
		n, _ := strconv.Atoi(count)
		op := ops[name]
		if op == nil {
			fmt.Fprintf(out, "error unknown op %q\n", name)
		} else if ns, err := bench.Batched(n, op); err != nil {
			fmt.Fprintf(out, "error %v\n", err)
		} else {
			fmt.Fprintf(out, "%.1f\n", ns)
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return in.Err()
}

func openClose(path string) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	return syscall.Close(fd)
}
