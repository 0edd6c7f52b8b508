//go:build linux

package exechelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/seccomp"
)

// Why a package of its own, with so few imports: the helper is a second
// Go start-up of the aigate binary in every run, and a Go program runs
// every linked package's initialisation before main, in dependency order,
// the lexically first ready package first. When the helper lived in
// package launch, its init waited for launch's imports (the agent API,
// the policy compiler, the network packages), and by then about 140 inits
// had run: prometheus' default registry and its collectors, protobuf
// descriptors, cilium/ebpf's feature tables, regexps compiled at package
// level. This package needs only the standard library, x/sys/unix,
// landlock and seccomp, so it is ready after a few dozen inits and, sorting
// before every third-party import path, runs as soon as it is. Importing
// anything heavier here would bring those inits back into the helper;
// TestHelperInitsFew (cmd/aigate) fails when it does.

const (
	// Env names the command's path: a process started with it set runs
	// as the exec helper.
	Env = "AIGATE_SANDBOX_EXEC"
	// FDEnv is the descriptor number of the go-ahead pipe.
	FDEnv = "AIGATE_SANDBOX_FD"
	// GoByte starts a go-ahead.
	GoByte = 'g'
)

// GoAhead is what the helper applies before the exec. The helper can be
// started before its sandbox exists (launch.Prepare), so that its start-up
// overlaps the agent's work; what it applies depends on the sandbox (its
// backend, its mode), so it comes with the go-ahead: the byte GoByte, then
// GoAhead as JSON, then the end of the pipe. Anything else (the pipe closed
// early, a short or bad message) and the helper exits without exec'ing.
type GoAhead struct {
	// Landlock is the domain the command enters.
	Landlock landlock.Options `json:"landlock"`
	// Seccomp is the filter (internal/seccomp) the command gets; none
	// when it refuses nothing (a BPF LSM program refuses it instead).
	Seccomp seccomp.Refuse `json:"seccomp"`
}

// maxGoAhead bounds the go-ahead message the helper reads.
const maxGoAhead = 1 << 20

// ExitNoGo is the helper's exit status when it was never told to go on:
// the command was not executed.
const ExitNoGo = 125

func init() {
	if path := os.Getenv(Env); path != "" {
		os.Exit(run(path))
	}
}

// run waits for the go-ahead on its pipe and execs path. It only returns
// on failure.
func run(path string) int {
	fdNum, err := strconv.Atoi(os.Getenv(FDEnv))
	if err != nil || fdNum < 3 {
		fmt.Fprintf(os.Stderr, "aigate: exec helper: bad %s\n", FDEnv)
		return ExitNoGo
	}
	pipe := os.NewFile(uintptr(fdNum), "go-ahead")
	msg, err := io.ReadAll(io.LimitReader(pipe, maxGoAhead+1))
	pipe.Close()
	if err != nil || len(msg) == 0 || msg[0] != GoByte || len(msg) > maxGoAhead {
		// The client gave up (the agent refused, or it was killed).
		return ExitNoGo
	}
	var ga GoAhead
	if err := json.Unmarshal(msg[1:], &ga); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: exec helper: bad go-ahead: %v\n", err)
		return ExitNoGo
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, Env+"=") || strings.HasPrefix(kv, FDEnv+"=") {
			continue
		}
		env = append(env, kv)
	}
	// no_new_privs is per thread and kept by execve: set it on the thread
	// that execs.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: set no_new_privs: %v\n", err)
		return ExitNoGo
	}
	if err := denyTerminalInjection(); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: %v\n", err)
		return ExitNoGo
	}
	// Entered only now, in the sandbox: the agent placed this process
	// while it was still unconfined aigate (its checks read our /proc),
	// and the domain must be in place before the command's first
	// instruction. Per thread, like no_new_privs: this thread execs.
	if err := enterLandlock(ga.Landlock); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: %v\n", err)
		return ExitNoGo
	}
	if ga.Seccomp.Any() {
		if err := seccomp.Install(ga.Seccomp); err != nil {
			fmt.Fprintf(os.Stderr, "aigate: confine the command: %v\n", err)
			return ExitNoGo
		}
	}
	// The command gets stdin, stdout and stderr only. aigate's own
	// descriptors (an embedded agent's fanotify group, BPF maps and links,
	// its socket) are close-on-exec already; this covers what aigate itself
	// inherited from whoever started it: a descriptor opened outside the
	// sandbox (exec 9<~/.ssh/id_rsa in the user's shell, a root service's
	// files) would reach files the policy denies without an open to check.
	// Marked close-on-exec rather than closed: the Go runtime may still
	// hold some of them until the exec.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fmt.Fprintf(os.Stderr, "aigate: close inherited descriptors: %v\n", err)
		return ExitNoGo
	}
	err = syscall.Exec(path, os.Args, env)
	fmt.Fprintf(os.Stderr, "aigate: exec %s: %v\n", path, err)
	if errors.Is(err, os.ErrNotExist) {
		return 127
	}
	return 126
}

// enterLandlock fences the helper (and so the command) off from the
// processes outside its domain and, with a home in opts, limits its writes
// there (package landlock). Without Landlock in the kernel it fails only
// when opts require it: the LSM backend refuses the same ptrace and
// signals with its own hooks.
func enterLandlock(opts landlock.Options) error {
	if landlock.ABI() > 0 {
		// Best effort: a tool that finds no ~/.cache copes as it would
		// anywhere; the run must not fail for it.
		_ = landlock.CreateMissing(opts)
	}
	rs, _ := landlock.Plan(opts, landlock.OSDirs{})
	if err := checkCovered(opts, rs, landlock.ABI(), filepath.EvalSymlinks); err != nil {
		return err
	}
	_, err := landlock.Restrict(rs)
	if errors.Is(err, landlock.ErrUnavailable) && !opts.Required && len(opts.Covered) == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("confine the command: %w", err)
	}
	return nil
}

// checkCovered refuses a domain rs that no longer covers each tree of
// opts.Covered (landlock.Covered) on a kernel of Landlock ABI abi: the
// fanotify backend protects those trees by their directories alone,
// trusting the domain to keep links and renames out of them, and the
// filesystem may have changed since run checked (a rule's path now a
// symlink into one).
func checkCovered(opts landlock.Options, rs landlock.Ruleset, abi int, resolve landlock.Resolver) error {
	if len(opts.Covered) == 0 {
		return nil
	}
	eff := rs.Effective(abi)
	for _, c := range opts.Covered {
		if abi == 0 || !landlock.Covered(eff, c, resolve) {
			return fmt.Errorf("confine the command: its Landlock domain would not keep links and renames out of %s, as the agent was told when the sandbox was made (a path changed since?); run it again", c)
		}
	}
	return nil
}
